/**
 * A float16 model rewritten to compute in float32, so its gradients (squared and summed
 * over many windows) do not underflow or lose precision. Initializers, Constant and
 * ConstantOfShape values, Cast targets and graph input/output/value types are changed
 * from FLOAT16 to FLOAT; everything else is untouched.
 */
import { AttrType, DataType, onnx, type GraphProto, type ModelProto, type TensorProto, type ValueInfoProto } from '../proto.ts';
import { floatTensor, tensorDims, tensorToFloat32 } from '../tensor.ts';

function upTensor(t: TensorProto): TensorProto {
  if (t.dataType !== DataType.FLOAT16) return t;
  if (t.externalData && t.externalData.length) throw new Error(`upcast: tensor ${t.name} still has external data`);
  return { ...floatTensor(t.name ?? '', tensorDims(t), tensorToFloat32(t)), name: t.name };
}

function upInfo(v: ValueInfoProto): ValueInfoProto {
  const tt = v.type?.tensorType;
  if (!tt || tt.elemType !== DataType.FLOAT16) return v;
  return { ...v, type: { ...v.type, tensorType: { ...tt, elemType: DataType.FLOAT } } };
}

function upGraph(g: GraphProto): GraphProto {
  return {
    ...g,
    initializer: (g.initializer ?? []).map(upTensor),
    input: (g.input ?? []).map(upInfo),
    output: (g.output ?? []).map(upInfo),
    valueInfo: (g.valueInfo ?? []).map(upInfo),
    node: (g.node ?? []).map((n) => ({
      ...n,
      attribute: (n.attribute ?? []).map((a) => {
        if (a.type === AttrType.TENSOR && a.t) return { ...a, t: upTensor(a.t) };
        if (a.type === AttrType.GRAPH && a.g) return { ...a, g: upGraph(a.g) };
        if (n.opType === 'Cast' && a.name === 'to' && Number(a.i) === DataType.FLOAT16) return { ...a, i: DataType.FLOAT };
        return a;
      }),
    })),
  };
}

/** Whether the model holds any FLOAT16 initializer. */
export function hasFloat16(model: ModelProto): boolean {
  return (model.graph?.initializer ?? []).some((t) => t.dataType === DataType.FLOAT16);
}

/** The model computing in float32 (a new object; the input is not modified). */
export function upcastToFloat32(model: ModelProto): ModelProto {
  return onnx.ModelProto.create({ ...model, graph: upGraph(model.graph!) });
}
