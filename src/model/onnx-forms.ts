/**
 * ONNX decoders as Hugging Face Optimum and onnx-community export them, turned into the
 * plain form every symprune pass runs (input_ids / attention_mask / position_ids in,
 * logits out):
 *  - `past_key_values.N.key/.value` inputs [batch, kv_heads, past, head_dim] become
 *    empty pasts (past = 0) made inside the graph, so no feeder needs to know them;
 *  - `present.*` outputs are dropped;
 *  - a `decoder_model_merged` graph's `If(use_cache_branch)` is replaced by its
 *    no-cache branch, inlined, so its MatMuls (and their module-path node names) are
 *    top-level nodes that layer discovery and graph surgery see.
 * Quantized graphs are refused: their weights are not floats a metric can score.
 *
 * The returned graph shares its initializer objects with the input model, so weights
 * pruned in one are pruned in the other (prune writes the original form back).
 */
import { InputError } from '../errors.ts';
import { node } from '../onnx/graph-build.ts';
import { DataType, onnx, type GraphProto, type ModelProto, type NodeProto } from '../onnx/proto.ts';
import { int64Tensor, tensorDims } from '../onnx/tensor.ts';

const QUANTIZED_OPS = new Set(['MatMulNBits', 'DequantizeLinear', 'QuantizeLinear', 'DynamicQuantizeLinear', 'QLinearMatMul', 'MatMulInteger', 'DynamicQuantizeMatMul', 'GatherBlockQuantized', 'QAttention', 'MatMulIntegerToFloat']);
const INT_WEIGHT_TYPES = new Set<number>([DataType.INT8, DataType.UINT8, /* INT4 */ 22, /* UINT4 */ 21]);
const PAST_RE = /^past_key_values\.\d+\.(key|value)$/;
const PRESENT_RE = /^present\.\d+\.(key|value)$/;
const CACHE_FLAG = 'use_cache_branch';

function* allNodes(g: GraphProto): Generator<NodeProto> {
  for (const n of g.node ?? []) {
    yield n;
    for (const a of n.attribute ?? []) {
      if (a.g) yield* allNodes(a.g);
      for (const s of a.graphs ?? []) yield* allNodes(s);
    }
  }
}

/** Throw the one-line error for a quantized graph; `source` names the file. */
function refuseQuantized(g: GraphProto, source: string): void {
  for (const n of allNodes(g)) {
    if (QUANTIZED_OPS.has(n.opType ?? '')) {
      throw new InputError(`${source}: quantized graph (${n.opType} nodes); symprune prunes float weights: use the float32 or float16 export (e.g. model.onnx or model_fp16.onnx, not model_q4.onnx / model_quantized.onnx)`);
    }
  }
  const t = (g.initializer ?? []).find((x) => INT_WEIGHT_TYPES.has(x.dataType ?? 0) && tensorDims(x).length === 2 && tensorDims(x).every((d) => d > 1));
  if (t) throw new InputError(`${source}: quantized graph (8/4-bit weight ${t.name}); symprune prunes float weights: use the float32 or float16 export`);
}

/** Replace `If(use_cache_branch)` nodes by their else (no-cache) branch. */
function inlineCacheBranches(g: GraphProto): { nodes: NodeProto[]; initializers: NonNullable<GraphProto['initializer']> } {
  const nodes: NodeProto[] = [];
  const initializers = [...(g.initializer ?? [])];
  for (const n of g.node ?? []) {
    if (n.opType !== 'If' || n.input?.[0] !== CACHE_FLAG) {
      nodes.push(n);
      continue;
    }
    const branch = (n.attribute ?? []).find((a) => a.name === 'else_branch')?.g;
    if (!branch) throw new InputError(`If node ${n.name}: no else_branch`);
    nodes.push(...(branch.node ?? []));
    initializers.push(...(branch.initializer ?? []));
    (branch.output ?? []).forEach((o, i) => {
      const target = n.output?.[i];
      if (target && target !== o.name) nodes.push(node('Identity', [o.name ?? ''], [target], `${n.name}/inlined_output_${i}`));
    });
  }
  return { nodes, initializers };
}

/** Nodes that make an empty past [batch, kvHeads, 0, headDim] under the input's name. */
function emptyPast(name: string, elemType: number, dims: Array<number | string | null>, batchFrom: string): NodeProto[] {
  const [, kvHeads, , headDim] = dims;
  if (dims.length !== 4 || typeof kvHeads !== 'number' || typeof headDim !== 'number') {
    throw new InputError(`input ${name}: expected [batch, kv_heads, past, head_dim] with fixed kv_heads and head_dim (got [${dims.join(', ')}])`);
  }
  const p = `/symprune/empty_past/${name}`;
  const zero = { name: '', dims: [1], dataType: elemType, rawData: new Uint8Array(elemType === DataType.FLOAT16 ? 2 : 4) };
  return [
    node('Shape', [batchFrom], [`${p}/shape`], `${p}/Shape`),
    node('Constant', [], [`${p}/zero`], `${p}/Constant`, { value: int64Tensor('', [1], [0]) }),
    node('Gather', [`${p}/shape`, `${p}/zero`], [`${p}/batch`], `${p}/Gather`, { axis: 0 }),
    node('Constant', [], [`${p}/rest`], `${p}/Constant_1`, { value: int64Tensor('', [3], [kvHeads, 0, headDim]) }),
    node('Concat', [`${p}/batch`, `${p}/rest`], [`${p}/dims`], `${p}/Concat`, { axis: 0 }),
    node('ConstantOfShape', [`${p}/dims`], [name], `${p}/ConstantOfShape`, { value: zero }),
  ];
}

function dimsOf(v: NonNullable<GraphProto['input']>[number]): Array<number | string | null> {
  return (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue !== undefined && d.dimValue !== null && String(d.dimValue) !== '0' ? Number(d.dimValue) : d.dimParam ?? null));
}

/** Whether the graph is an Optimum-style decoder with a KV cache. */
export function hasKvCache(model: ModelProto): boolean {
  return (model.graph?.input ?? []).some((i) => PAST_RE.test(i.name ?? '') || i.name === CACHE_FLAG);
}

/** The runnable plain form of a decoder graph (the same object when it is plain already). */
export function prepareOnnxDecoder(model: ModelProto, source: string): ModelProto {
  const g = model.graph!;
  refuseQuantized(g, source);
  if (!hasKvCache(model)) return model;
  const { nodes, initializers } = inlineCacheBranches(g);
  const pre: NodeProto[] = [];
  const inputs = [];
  for (const i of g.input ?? []) {
    const name = i.name ?? '';
    if (PAST_RE.test(name)) pre.push(...emptyPast(name, i.type?.tensorType?.elemType ?? DataType.FLOAT, dimsOf(i), 'input_ids'));
    else if (name === CACHE_FLAG) pre.push(node('Constant', [], [name], `/symprune/${name}`, { value: { name: '', dims: [1], dataType: DataType.BOOL, rawData: new Uint8Array(1) } }));
    else inputs.push(i);
  }
  return onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...g,
      node: [...pre, ...nodes],
      initializer: initializers,
      input: inputs,
      output: (g.output ?? []).filter((o) => !PRESENT_RE.test(o.name ?? '')),
    }),
  });
}
