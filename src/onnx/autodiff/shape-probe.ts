/**
 * Static shapes for a gradient graph, read off one forward run. Calibration and training
 * run fixed [batch, seqlen] shapes, so a single probe that exposes every intermediate
 * tensor as an output tells the reverse sweep every shape (and the values of the small
 * integer tensors that drive Slice/Reshape), without an ONNX shape-inference engine.
 */
import { DataType, onnx, type ModelProto, type TensorProto } from '../proto.ts';
import { createSession, ort, type SessionOptions } from '../session.ts';
import { tensorDims, tensorToFloat32, tensorToInts, numel } from '../tensor.ts';

export interface TensorInfo {
  dims: number[];
  /** ONNX TensorProto.DataType */
  dtype: number;
  /** Values, kept for small integer tensors (<= 4096 elements) and tiny float tensors (<= 16). */
  values?: number[];
}

/** ONNX data type of an onnxruntime tensor type. */
export const ORT_TO_ONNX: Record<string, number> = {
  float32: DataType.FLOAT, uint8: DataType.UINT8, int8: DataType.INT8, uint16: DataType.UINT16,
  int16: DataType.INT16, int32: DataType.INT32, int64: DataType.INT64, string: DataType.STRING,
  bool: DataType.BOOL, float16: DataType.FLOAT16, float64: DataType.DOUBLE, uint32: DataType.UINT32,
  uint64: DataType.UINT64, bfloat16: DataType.BFLOAT16,
};

const ONNX_TO_ORT: Record<number, ort.Tensor.Type> = {
  [DataType.FLOAT]: 'float32', [DataType.UINT8]: 'uint8', [DataType.INT8]: 'int8', [DataType.INT32]: 'int32',
  [DataType.INT64]: 'int64', [DataType.BOOL]: 'bool', [DataType.FLOAT16]: 'float16', [DataType.DOUBLE]: 'float64',
};

export const FLOAT_TYPES: ReadonlySet<number> = new Set([DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, DataType.BFLOAT16]);
const INT_TYPES: ReadonlySet<number> = new Set([DataType.INT64, DataType.INT32, DataType.INT16, DataType.INT8, DataType.UINT8, DataType.BOOL]);

function keepValues(dtype: number, n: number): boolean {
  return (INT_TYPES.has(dtype) && n <= 4096) || (FLOAT_TYPES.has(dtype) && n <= 16);
}

function ortValues(t: ort.Tensor): number[] {
  const d = t.data as ArrayLike<number | bigint>;
  return Array.from(d, (v) => Number(v));
}

function initializerInfo(t: TensorProto): TensorInfo {
  const dims = tensorDims(t);
  const dtype = t.dataType ?? DataType.FLOAT;
  const info: TensorInfo = { dims, dtype };
  const n = numel(dims);
  if (keepValues(dtype, n) && !(t.externalData && t.externalData.length)) {
    if (dtype === DataType.INT64 || dtype === DataType.INT32) info.values = tensorToInts(t);
    else if (FLOAT_TYPES.has(dtype) && dtype !== DataType.BFLOAT16) info.values = Array.from(tensorToFloat32(t));
  }
  return info;
}

/** A zero-filled ORT tensor of an ONNX data type, for inputs only known by shape. */
export function zeroTensor(dtype: number, dims: number[]): ort.Tensor {
  const type = ONNX_TO_ORT[dtype];
  if (!type) throw new Error(`cannot make a zero tensor of ONNX data type ${dtype}`);
  const n = numel(dims);
  const data = type === 'int64' ? new BigInt64Array(n) : type === 'float64' ? new Float64Array(n)
    : type === 'int32' ? new Int32Array(n) : type === 'float16' ? new Uint16Array(n)
    : type === 'uint8' || type === 'bool' ? new Uint8Array(n) : type === 'int8' ? new Int8Array(n) : new Float32Array(n);
  return new ort.Tensor(type, data as never, dims);
}

/**
 * Run the graph once with `feeds`, every node output requested, and return the shape,
 * type (and small values) of every tensor: graph inputs, initializers, node outputs.
 */
export async function probeTensors(model: ModelProto, feeds: Record<string, ort.Tensor>, opts: SessionOptions = {}): Promise<Map<string, TensorInfo>> {
  const graph = model.graph!;
  const infos = new Map<string, TensorInfo>();
  for (const t of graph.initializer ?? []) infos.set(t.name!, initializerInfo(t));
  for (const [name, t] of Object.entries(feeds)) {
    const info: TensorInfo = { dims: [...t.dims], dtype: ORT_TO_ONNX[t.type] ?? DataType.UNDEFINED };
    if (keepValues(info.dtype, t.size)) info.values = ortValues(t);
    infos.set(name, info);
  }
  const outNames: string[] = [];
  const seen = new Set<string>();
  for (const n of graph.node ?? []) {
    for (const o of n.output ?? []) {
      if (o && !seen.has(o) && !infos.has(o)) { seen.add(o); outNames.push(o); }
    }
  }
  const probe = onnx.ModelProto.create({ ...model, graph: { ...graph, output: outNames.map((name) => ({ name })), valueInfo: [] } });
  const session = await createSession(probe, opts);
  try {
    const inputNames = new Set(session.inputNames);
    const runFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) if (inputNames.has(k)) runFeeds[k] = v;
    const res = await session.run(runFeeds);
    for (const name of outNames) {
      const t = res[name];
      if (!t) continue;
      const info: TensorInfo = { dims: [...t.dims], dtype: ORT_TO_ONNX[t.type] ?? DataType.UNDEFINED };
      if (keepValues(info.dtype, t.size) && t.type !== 'float16') info.values = ortValues(t);
      infos.set(name, info);
    }
  } finally {
    await session.release();
  }
  return infos;
}
