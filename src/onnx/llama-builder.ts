/**
 * Emit a LLaMA decoder (Hugging Face LlamaForCausalLM, eager attention) as an opset-17
 * ONNX graph shaped like torch.onnx.export's output: inputs input_ids / attention_mask /
 * position_ids (int64, dynamic batch and sequence), output logits; every linear layer a
 * MatMul whose B is an [in, out] initializer; node names carry the module path
 * (`/model/layers.0/self_attn/q_proj/MatMul`), so tools written for real exports work
 * on these graphs unchanged.
 *
 * Ops emitted (the reverse-mode autodiff must cover the ones on a weight's path):
 * Constant, Shape, Gather, ConstantOfShape, Trilu, Equal, Unsqueeze, Where (mask and
 * rotary tables: no weight upstream), Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul,
 * MatMul, Reshape, Transpose, Slice, Neg, Concat, Expand (GQA only), Softmax, Sigmoid.
 */
import { DataType, type ModelProto, type NodeProto, type TensorProto } from './proto.ts';
import { node, valueInfo, makeModel, type AttrValue } from './graph-build.ts';
import { floatTensor, int64Tensor, transposeInto } from './tensor.ts';
import { headDim, validateLlamaConfig, type LlamaConfig } from './llama-config.ts';
import { checkLlamaWeights, llamaWeightSpecs, type LlamaWeights } from './llama-weights.ts';

/** torch.finfo(torch.float32).min: the additive mask value transformers uses. */
export const MASK_MIN = -3.4028234663852886e38;

export interface BuildLlamaOptions {
  /**
   * 'module' (default): MatMul initializers named after the module
   * (`model.layers.0.self_attn.q_proj.weight`, stored [in, out]);
   * 'torch-generated': `onnx::MatMul_<n>` as torch.onnx.export names transposed weights.
   */
  weightNames?: 'module' | 'torch-generated';
  /**
   * Delete each weight from the map once it is in the graph, so a large model is held
   * once (as initializers), not twice. The caller's map is emptied.
   */
  consume?: boolean;
  /**
   * Build the graph without weight data: every weight initializer is a stub with its
   * name, type and [in, out] / PyTorch dims, marked external, for a source that reads
   * the bytes one tensor at a time (a checkpoint too large to hold; `weights` unused).
   */
  skeleton?: boolean;
  /**
   * A KV cache as Hugging Face Optimum exports it: 'past' adds inputs
   * `past_key_values.N.key/.value` [batch, kvHeads, past, headDim] (attention_mask then
   * spans past + seq) and outputs `present.N.key/.value`; 'present' gives the outputs
   * only (Optimum's no-past decoder). Default: no cache.
   */
  cache?: 'past' | 'present';
}

/** The location skeleton stubs carry: their bytes live in the checkpoint, not in an ONNX data file. */
export const SKELETON_LOCATION = 'symprune-skeleton';

function stubTensor(name: string, dims: number[]): TensorProto {
  return { name, dims, dataType: DataType.FLOAT, dataLocation: 1, externalData: [{ key: 'location', value: SKELETON_LOCATION }] };
}

/** First number torch-generated MatMul initializer names count from. */
const TORCH_NAME_BASE = 3000;

/**
 * The initializer name of each weight (state_dict name -> graph initializer name).
 * Linear weights are stored transposed, [in, out]; the others as in PyTorch.
 */
export function llamaInitializerNames(c: LlamaConfig, style: 'module' | 'torch-generated' = 'module'): Map<string, string> {
  const names = new Map<string, string>();
  let n = TORCH_NAME_BASE;
  for (const s of llamaWeightSpecs(c)) {
    names.set(s.name, s.kind === 'linear' && style === 'torch-generated' ? `onnx::MatMul_${n++}` : s.name);
  }
  return names;
}

/**
 * Rotary inverse frequencies [headDim / 2] in float32 as transformers computes them,
 * rescaled by rope_scaling ('linear': all divided by the factor; 'llama3': long
 * wavelengths divided by the factor, short ones kept, a smooth blend between).
 */
export function ropeInverseFrequencies(c: LlamaConfig): Float32Array {
  const hd = headDim(c);
  const half = hd / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.fround(c.ropeTheta ** Math.fround((2 * i) / hd));
  const rs = c.ropeScaling;
  if (rs?.type === 'linear') for (let i = 0; i < half; i++) inv[i] = inv[i]! / rs.factor;
  if (rs?.type === 'llama3') {
    const lowWavelen = rs.originalMaxPositions / rs.lowFreqFactor;
    const highWavelen = rs.originalMaxPositions / rs.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) inv[i] = f / rs.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (rs.originalMaxPositions / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
        inv[i] = ((1 - smooth) * f) / rs.factor + smooth * f;
      }
    }
  }
  return inv;
}

/** Rotary cos/sin tables [maxPositions, headDim], computed in float32 as transformers does. */
export function ropeTables(c: LlamaConfig): { cos: Float32Array; sin: Float32Array } {
  const hd = headDim(c);
  const half = hd / 2;
  const inv = ropeInverseFrequencies(c);
  const cos = new Float32Array(c.maxPositions * hd);
  const sin = new Float32Array(c.maxPositions * hd);
  for (let p = 0; p < c.maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(p * inv[i]!);
      cos[p * hd + i] = cos[p * hd + i + half] = Math.cos(a);
      sin[p * hd + i] = sin[p * hd + i + half] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** Accumulates nodes with torch-style names: `<scope>/<Op>`, `<scope>/<Op>_1`, ... */
class GraphWriter {
  nodes: NodeProto[] = [];
  initializers: TensorProto[] = [];
  private counts = new Map<string, number>();
  private constants = new Map<string, string>();

  op(opType: string, inputs: string[], scope: string, attrs: Record<string, AttrValue> = {}, output?: string): string {
    const key = `${scope}/${opType}`;
    const k = this.counts.get(key) ?? 0;
    this.counts.set(key, k + 1);
    const name = k === 0 ? key : `${key}_${k}`;
    const out = output ?? `${name}_output_0`;
    this.nodes.push(node(opType, inputs, [out], name, attrs));
    return out;
  }

  /** A shared Constant node (one per distinct value). */
  constant(t: TensorProto, key: string): string {
    const have = this.constants.get(key);
    if (have) return have;
    const out = this.op('Constant', [], '', { value: t });
    this.constants.set(key, out);
    return out;
  }

  i64(values: number[], scalar = false): string {
    return this.constant(int64Tensor('', scalar ? [] : [values.length], values), `i64:${scalar}:${values.join(',')}`);
  }

  f32(value: number): string {
    return this.constant(floatTensor('', [], new Float32Array([value])), `f32:${value}`);
  }
}

/** Build the ONNX graph of a LLaMA decoder from its config and PyTorch-layout weights. */
export function buildLlama(config: LlamaConfig, weights: LlamaWeights, opts: BuildLlamaOptions = {}): ModelProto {
  const c = validateLlamaConfig(config);
  if (!opts.skeleton) checkLlamaWeights(c, weights);
  const names = llamaInitializerNames(c, opts.weightNames ?? 'module');
  const shapes = new Map(llamaWeightSpecs(c).map((s) => [s.name, s]));
  const g = new GraphWriter();
  const hd = headDim(c);
  const nRep = c.heads / c.kvHeads;

  // A fresh transposed array, or a consumed map entry, becomes the tensor's bytes as it is (no copy).
  const own = (name: string, d: Float32Array, dims: number[]): TensorProto => ({ name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) });
  const weight = (hfName: string): string => {
    const spec = shapes.get(hfName)!;
    const data = weights.get(hfName)!;
    const name = names.get(hfName)!;
    if (opts.skeleton) {
      g.initializers.push(stubTensor(name, spec.kind === 'linear' ? [spec.shape[1]!, spec.shape[0]] : [...spec.shape]));
    } else if (spec.kind === 'linear') {
      const [out, inp] = spec.shape as [number, number];
      g.initializers.push(own(name, transposeInto(data, out, inp), [inp, out]));
    } else {
      g.initializers.push(opts.consume ? own(name, data, [...spec.shape]) : floatTensor(name, [...spec.shape], data));
    }
    if (opts.consume) weights.delete(hfName);
    return name;
  };
  // A tied head multiplies by the embedding: stored as its own [dim, vocab] initializer
  // (graphs keep MatMul weights [in, out]), taken before the embedding may be consumed.
  const tiedHead = c.tieWordEmbeddings && opts.skeleton ? stubTensor('lm_head.weight', [c.dim, c.vocabSize]) : c.tieWordEmbeddings ? floatTensor('lm_head.weight', [c.dim, c.vocabSize], transposeInto(weights.get('model.embed_tokens.weight')!, c.vocabSize, c.dim)) : null;

  const rmsNorm = (x: string, scope: string, hfName: string): string => {
    const p = g.op('Pow', [x, g.f32(2)], scope);
    const m = g.op('ReduceMean', [p], scope, { axes: [-1], keepdims: 1 });
    const a = g.op('Add', [m, g.f32(c.normEps)], scope);
    const s = g.op('Sqrt', [a], scope);
    const r = g.op('Reciprocal', [s], scope);
    const y = g.op('Mul', [x, r], scope);
    return g.op('Mul', [weight(hfName), y], scope);
  };

  const linear = (x: string, module: string): string => {
    const scope = `/${module.replace(/\./g, '/').replace(/\/(\d+)\//g, '.$1/')}`;
    const y = g.op('MatMul', [x, weight(`${module}.weight`)], scope);
    return shapes.has(`${module}.bias`) ? g.op('Add', [weight(`${module}.bias`), y], scope) : y;
  };

  // Embedding.
  const embedW = weight('model.embed_tokens.weight');
  let h = g.op('Gather', [embedW, 'input_ids'], '/model/embed_tokens');

  // Causal + padding mask [batch, 1, seq, seq]: 0 where attended, MASK_MIN elsewhere
  // (selected with Where, never summed, so a fully padded row stays finite).
  const shape = g.op('Shape', ['input_ids'], '/model');
  let causal: string;
  if (opts.cache === 'past') {
    // [seq, past + seq], masked above the diagonal shifted right by past.
    const total = g.op('Gather', [g.op('Shape', ['attention_mask'], '/model'), g.i64([1])], '/model', { axis: 0 });
    const rows = g.op('Gather', [shape, g.i64([1])], '/model', { axis: 0 });
    const filled = g.op('ConstantOfShape', [g.op('Concat', [rows, total], '/model', { axis: 0 })], '/model', { value: floatTensor('', [1], new Float32Array([MASK_MIN])) });
    const shift = g.op('Squeeze', [g.op('Add', [g.op('Sub', [total, rows], '/model'), g.i64([1])], '/model'), g.i64([0])], '/model');
    causal = g.op('Trilu', [filled, shift], '/model', { upper: 1 });
  } else {
    const ss = g.op('Gather', [shape, g.i64([1, 1])], '/model', { axis: 0 });
    const filled = g.op('ConstantOfShape', [ss], '/model', { value: floatTensor('', [1], new Float32Array([MASK_MIN])) });
    causal = g.op('Trilu', [filled, g.i64([1], true)], '/model', { upper: 1 });
  }
  const padded = g.op('Equal', ['attention_mask', g.i64([0], true)], '/model');
  const padded4 = g.op('Unsqueeze', [padded, g.i64([1, 2])], '/model');
  const mask = g.op('Where', [padded4, g.f32(MASK_MIN), causal], '/model');

  // Rotary tables gathered by position: [batch, 1, seq, headDim].
  const tables = ropeTables(c);
  g.initializers.push(floatTensor('model.rotary_emb.cos_cached', [c.maxPositions, hd], tables.cos));
  g.initializers.push(floatTensor('model.rotary_emb.sin_cached', [c.maxPositions, hd], tables.sin));
  const cos = g.op('Unsqueeze', [g.op('Gather', ['model.rotary_emb.cos_cached', 'position_ids'], '/model/rotary_emb'), g.i64([1])], '/model/rotary_emb');
  const sin = g.op('Unsqueeze', [g.op('Gather', ['model.rotary_emb.sin_cached', 'position_ids'], '/model/rotary_emb'), g.i64([1])], '/model/rotary_emb');

  const rotary = (x: string, scope: string): string => {
    const x1 = g.op('Slice', [x, g.i64([0]), g.i64([hd / 2]), g.i64([-1])], scope);
    const x2 = g.op('Slice', [x, g.i64([hd / 2]), g.i64([hd]), g.i64([-1])], scope);
    const rot = g.op('Concat', [g.op('Neg', [x2], scope), x1], scope, { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, cos], scope), g.op('Mul', [rot, sin], scope)], scope);
  };
  const repeatKv = (x: string, scope: string): string => {
    if (nRep === 1) return x;
    const u = g.op('Unsqueeze', [x, g.i64([2])], scope);
    const e = g.op('Expand', [u, g.i64([1, 1, nRep, 1, 1])], scope);
    return g.op('Reshape', [e, g.i64([0, c.heads, -1, hd])], scope);
  };

  for (let i = 0; i < c.layers; i++) {
    const L = `/model/layers.${i}`;
    const A = `${L}/self_attn`;
    const xn = rmsNorm(h, `${L}/input_layernorm`, `model.layers.${i}.input_layernorm.weight`);
    const heads = (x: string, n: number): string => g.op('Transpose', [g.op('Reshape', [x, g.i64([0, 0, n, hd])], A)], A, { perm: [0, 2, 1, 3] });
    const q = rotary(heads(linear(xn, `model.layers.${i}.self_attn.q_proj`), c.heads), A);
    let kc = rotary(heads(linear(xn, `model.layers.${i}.self_attn.k_proj`), c.kvHeads), A);
    let vc = heads(linear(xn, `model.layers.${i}.self_attn.v_proj`), c.kvHeads);
    if (opts.cache) {
      const past = opts.cache === 'past';
      kc = g.op(past ? 'Concat' : 'Identity', past ? [`past_key_values.${i}.key`, kc] : [kc], A, past ? { axis: 2 } : {}, `present.${i}.key`);
      vc = g.op(past ? 'Concat' : 'Identity', past ? [`past_key_values.${i}.value`, vc] : [vc], A, past ? { axis: 2 } : {}, `present.${i}.value`);
    }
    const k = repeatKv(kc, A);
    const v = repeatKv(vc, A);
    const scores = g.op('MatMul', [q, g.op('Transpose', [k], A, { perm: [0, 1, 3, 2] })], A);
    const scaled = g.op('Mul', [scores, g.f32(1 / Math.sqrt(hd))], A);
    const probs = g.op('Softmax', [g.op('Add', [scaled, mask], A)], A, { axis: -1 });
    const ctx = g.op('Transpose', [g.op('MatMul', [probs, v], A)], A, { perm: [0, 2, 1, 3] });
    const merged = g.op('Reshape', [ctx, g.i64([0, 0, -1])], A);
    h = g.op('Add', [h, linear(merged, `model.layers.${i}.self_attn.o_proj`)], L);

    const M = `${L}/mlp`;
    const xn2 = rmsNorm(h, `${L}/post_attention_layernorm`, `model.layers.${i}.post_attention_layernorm.weight`);
    const gate = linear(xn2, `model.layers.${i}.mlp.gate_proj`);
    const act = g.op('Mul', [gate, g.op('Sigmoid', [gate], `${M}/act_fn`)], `${M}/act_fn`);
    const up = linear(xn2, `model.layers.${i}.mlp.up_proj`);
    const down = linear(g.op('Mul', [act, up], M), `model.layers.${i}.mlp.down_proj`);
    h = g.op('Add', [h, down], L);
  }
  const hn = rmsNorm(h, '/model/norm', 'model.norm.weight');
  if (tiedHead) g.initializers.push(tiedHead);
  g.op('MatMul', [hn, tiedHead ? 'lm_head.weight' : weight('lm_head.weight')], '/lm_head', {}, 'logits');

  const cacheInfo = (kind: string, len: string) =>
    Array.from({ length: c.layers }, (_, i) => ['key', 'value'].map((kv) => valueInfo(`${kind}.${i}.${kv}`, DataType.FLOAT, ['batch', c.kvHeads, len, hd]))).flat();
  return makeModel({
    name: 'main_graph',
    node: g.nodes,
    initializer: g.initializers,
    input: [
      valueInfo('input_ids', DataType.INT64, ['batch', 'seq']),
      valueInfo('attention_mask', DataType.INT64, ['batch', opts.cache === 'past' ? 'total_seq' : 'seq']),
      valueInfo('position_ids', DataType.INT64, ['batch', 'seq']),
      ...(opts.cache === 'past' ? cacheInfo('past_key_values', 'past_seq') : []),
    ],
    output: [valueInfo('logits', DataType.FLOAT, ['batch', 'seq', c.vocabSize]), ...(opts.cache ? cacheInfo('present', 'total_seq') : [])],
  });
}
