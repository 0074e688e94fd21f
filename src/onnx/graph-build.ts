/**
 * Small constructors for ONNX nodes, attributes, value infos and models, so graph
 * builders read like the graphs they emit.
 */
import { AttrType, DataType, onnx, type ModelProto, type AttributeProto, type GraphProto, type NodeProto, type TensorProto, type ValueInfoProto } from './proto.ts';

export type AttrValue = number | number[] | string | TensorProto | { floats: number[] } | { float: number };

/** Integers become INT/INTS; wrap floats as {float} / {floats} to disambiguate. */
export function attr(name: string, v: AttrValue): AttributeProto {
  if (typeof v === 'number') return { name, type: AttrType.INT, i: v };
  if (typeof v === 'string') return { name, type: AttrType.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: AttrType.INTS, ints: v };
  if ('float' in v) return { name, type: AttrType.FLOAT, f: v.float };
  if ('floats' in v) return { name, type: AttrType.FLOATS, floats: v.floats };
  return { name, type: AttrType.TENSOR, t: v };
}

export function node(opType: string, inputs: string[], outputs: string[], name?: string, attrs: Record<string, AttrValue> = {}): NodeProto {
  return {
    opType,
    input: inputs,
    output: outputs,
    name: name ?? outputs[0],
    attribute: Object.entries(attrs).map(([k, v]) => attr(k, v)),
  };
}

/** Read a node attribute as a plain JS value (int, ints, float, floats, string, tensor). */
export function getAttr(n: NodeProto, name: string): number | number[] | string | TensorProto | undefined {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  if (!a) return undefined;
  switch (a.type) {
    case AttrType.INT: return Number(a.i);
    case AttrType.INTS: return (a.ints ?? []).map(Number);
    case AttrType.FLOAT: return a.f ?? 0;
    case AttrType.FLOATS: return (a.floats ?? []).map(Number);
    case AttrType.STRING: return new TextDecoder().decode(a.s ?? new Uint8Array());
    case AttrType.TENSOR: return a.t ?? undefined;
    default: return undefined;
  }
}

/** A tensor value info; a string dim is symbolic (dynamic), a number is fixed. */
export function valueInfo(name: string, elemType: number, dims: Array<number | string>): ValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

export function makeModel(graph: GraphProto, opset = 17): ModelProto {
  return onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'symprune',
    opsetImport: [{ domain: '', version: opset }],
    graph,
  });
}

/** The model's version of the default ONNX domain, or `fallback` when it declares none. */
export function modelOpset(model: ModelProto, fallback: number): number {
  const imp = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return imp ? Number(imp.version) : fallback;
}

export { DataType };
