/**
 * Calibration statistics by graph instrumentation: the model itself computes, for
 * each prunable layer's input activation x, the per-channel Σ x² over batch and
 * sequence (Wanda's scaler_row, DESIGN.md's X) and, for SparseGPT, the Gram matrix
 * Σ x xᵀ. Only these reductions leave the session, so memory does not grow with the
 * number of layers, and layers reading one activation (q, k, v; gate, up) share one
 * output. The graph is cut down to the nodes the requested outputs need, so the
 * statistics of block i cost a forward pass through blocks 0..i only.
 */
import { InputError } from '../errors.ts';
import { DataType, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../onnx/proto.ts';
import { modelOpset, node } from '../onnx/graph-build.ts';
import { floatToHalf, int64Tensor } from '../onnx/tensor.ts';
import { createSession, ort, tensorFeed, type SessionOptions } from '../onnx/session.ts';
import { windowFeeds } from '../onnx/segment-stream.ts';
import { SquareSumAccumulator } from './layer-stats.ts';
import { HessianAccumulator } from './sparsegpt.ts';

/** The facts about a prunable layer calibration needs (a PrunableLayer has them). */
export interface CalibrationLayer {
  name: string;
  /** The activation tensor the layer multiplies. */
  input: string;
  in: number;
}

export interface InstrumentOptions {
  /** Per-channel Σ x² (for X). Default true. */
  sumSquares?: boolean;
  /** Σ x xᵀ, [in, in] (for SparseGPT's Hessian). Default false. */
  gram?: boolean;
  /** Keep the model's own outputs beside the statistics (a streamed block's hidden state). Default false. */
  keepOutputs?: boolean;
}

/** Output tensor names of the instrumented model for one distinct layer input. */
export interface InstrumentedInput {
  input: string;
  channels: number;
  sumSquares?: string;
  gram?: string;
  layers: string[];
}

export interface Instrumented {
  model: ModelProto;
  inputs: InstrumentedInput[];
}

const PREFIX = 'symprune_calib';

/** Every tensor name a node reads, including outer-scope names used in its subgraphs. */
function nodeInputs(n: NodeProto, into: Set<string>): void {
  for (const i of n.input ?? []) if (i) into.add(i);
  for (const a of n.attribute ?? []) {
    const graphs: GraphProto[] = [];
    if (a.g) graphs.push(a.g);
    for (const g of a.graphs ?? []) graphs.push(g);
    for (const g of graphs) for (const sub of g.node ?? []) nodeInputs(sub, into);
  }
}

/**
 * A new model that outputs only the requested tensors, with every node, initializer,
 * input and value info they do not depend on removed. Tensor data is shared with
 * the original (nothing is copied).
 */
export function pruneGraphToOutputs(model: ModelProto, outputs: ValueInfoProto[], extraNodes: NodeProto[] = [], extraInitializers: TensorProto[] = []): ModelProto {
  const g = model.graph!;
  const nodes = [...(g.node ?? []), ...extraNodes];
  const producer = new Map<string, number>();
  nodes.forEach((n, k) => (n.output ?? []).forEach((o) => o && producer.set(o, k)));
  const needed = new Set<string>(outputs.map((o) => o.name!));
  const keep = new Uint8Array(nodes.length);
  const stack = [...needed];
  while (stack.length > 0) {
    const t = stack.pop()!;
    const k = producer.get(t);
    if (k === undefined || keep[k]) continue;
    keep[k] = 1;
    const ins = new Set<string>();
    nodeInputs(nodes[k]!, ins);
    for (const i of ins) {
      if (!needed.has(i)) {
        needed.add(i);
        stack.push(i);
      }
    }
  }
  const keptNodes = nodes.filter((_, k) => keep[k]);
  const inits = [...(g.initializer ?? []), ...extraInitializers].filter((t) => needed.has(t.name!));
  const initNames = new Set(inits.map((t) => t.name!));
  const graph: GraphProto = {
    ...g,
    node: keptNodes,
    initializer: inits,
    input: (g.input ?? []).filter((v) => needed.has(v.name!) && !initNames.has(v.name!)),
    output: outputs,
    valueInfo: (g.valueInfo ?? []).filter((v) => needed.has(v.name!)),
  };
  const copy = Object.assign(Object.create(Object.getPrototypeOf(model)), model) as ModelProto;
  copy.graph = graph;
  return copy;
}

/**
 * Instrument `model` so that it outputs, for each distinct input activation of
 * `layers`, Σ x² per channel ([in]) and/or Σ x xᵀ ([in, in]), summed over every
 * leading axis (batch, sequence), in float32 whatever the model's float type.
 * The logits and everything the statistics do not need are dropped.
 */
export function instrumentModel(model: ModelProto, layers: CalibrationLayer[], opts: InstrumentOptions = {}): Instrumented {
  const wantSq = opts.sumSquares ?? true;
  const wantGram = opts.gram ?? false;
  if (!wantSq && !wantGram) throw new Error('instrumentModel: nothing requested');
  const opset = modelOpset(model, 17);
  const byInput = new Map<string, InstrumentedInput>();
  for (const l of layers) {
    const have = byInput.get(l.input);
    if (have) {
      if (have.channels !== l.in) throw new Error(`layers ${have.layers[0]} and ${l.name} read ${l.input} with different widths (${have.channels}, ${l.in})`);
      have.layers.push(l.name);
    } else {
      byInput.set(l.input, { input: l.input, channels: l.in, layers: [l.name] });
    }
  }
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  const outputs: ValueInfoProto[] = [];
  const f32out = (name: string, dims: number[]): ValueInfoProto => ({
    name,
    type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  const axes0 = `${PREFIX}/axes0`;
  if (wantSq && opset >= 18) inits.push(int64Tensor(axes0, [1], [0]));
  let k = 0;
  for (const e of byInput.values()) {
    const p = `${PREFIX}/${k++}`;
    const shape = `${p}/shape`;
    inits.push(int64Tensor(shape, [2], [-1, e.channels]));
    nodes.push(node('Cast', [e.input], [`${p}/x32`], `${p}/Cast`, { to: DataType.FLOAT }));
    nodes.push(node('Reshape', [`${p}/x32`, shape], [`${p}/x2d`], `${p}/Reshape`));
    if (wantSq) {
      e.sumSquares = `${p}/sum_sq`;
      nodes.push(opset >= 18
        ? node('ReduceSumSquare', [`${p}/x2d`, axes0], [e.sumSquares], `${p}/ReduceSumSquare`, { keepdims: 0 })
        : node('ReduceSumSquare', [`${p}/x2d`], [e.sumSquares], `${p}/ReduceSumSquare`, { axes: [0], keepdims: 0 }));
      outputs.push(f32out(e.sumSquares, [e.channels]));
    }
    if (wantGram) {
      e.gram = `${p}/gram`;
      nodes.push(node('Gemm', [`${p}/x2d`, `${p}/x2d`], [e.gram], `${p}/Gemm`, { transA: 1 }));
      outputs.push(f32out(e.gram, [e.channels, e.channels]));
    }
  }
  const known = new Set<string>([
    ...(model.graph?.node ?? []).flatMap((n) => n.output ?? []),
    ...(model.graph?.input ?? []).map((v) => v.name!),
    ...(model.graph?.initializer ?? []).map((t) => t.name!),
  ]);
  for (const e of byInput.values()) if (!known.has(e.input)) throw new Error(`instrumentModel: tensor ${e.input} (input of ${e.layers[0]}) is not in the graph`);
  const kept = opts.keepOutputs ? (model.graph?.output ?? []) : [];
  return { model: pruneGraphToOutputs(model, [...kept, ...outputs], nodes, inits), inputs: [...byInput.values()] };
}

/** Feeds for a batch of token windows (input_ids, and attention_mask / position_ids when the model takes them). */
export const tokenFeeds = windowFeeds;

/**
 * Session feeds holding the current data of initializers, in their stored layout and
 * type, as views of the tensors' bytes whenever they are aligned (no copy): feeding
 * the weights this way lets a calibration session run without its own copy of them.
 * The views keep the bytes they see: a later writeLayerWeight (which replaces a
 * tensor's bytes) does not change feeds taken before it.
 */
export function initializerFeeds(model: ModelProto, names: Iterable<string>): Map<string, ort.Tensor> {
  const byName = new Map((model.graph?.initializer ?? []).map((t) => [t.name!, t]));
  const feeds = new Map<string, ort.Tensor>();
  for (const name of names) {
    const t = byName.get(name);
    if (!t) throw new Error(`initializerFeeds: no initializer ${name}`);
    feeds.set(name, tensorFeed(t));
  }
  return feeds;
}

export interface CollectOptions extends SessionOptions {
  /** Sequences per session run (default 8). */
  batchSize?: number;
  /**
   * Data for graph inputs that stand for weights (initializer name -> data in the
   * initializer's stored layout), used when the model's weights were made inputs.
   */
  weights?: ReadonlyMap<string, Float32Array | ort.Tensor>;
  /** Progress callback after each batch. */
  onBatch?: (done: number, total: number) => void;
}

/** Statistics of each distinct layer input, keyed by layer name (layers sharing an input share objects). */
export interface CollectedStats {
  X: Map<string, Float32Array>;
  gram: Map<string, HessianAccumulator>;
  sequences: number;
}

function declaredDims(v: ValueInfoProto): number[] {
  return (v.type?.tensorType?.shape?.dim ?? []).map((d) => Number(d.dimValue ?? 0));
}

/**
 * Run `model` (dense or with weights as inputs) over the calibration windows and return
 * X (= mean over sequences of Σ_t x²) and/or the input Gram accumulators of `layers`.
 */
export async function collectStatistics(model: ModelProto, layers: CalibrationLayer[], windows: Int32Array[], opts: CollectOptions & InstrumentOptions = {}): Promise<CollectedStats> {
  if (windows.length === 0) throw new InputError('calibration: no windows');
  const inst = instrumentModel(model, layers, opts);
  const session = await createSession(inst.model, { threads: opts.threads });
  try {
    const weightFeeds: Record<string, ort.Tensor> = {};
    const tokenInputs = new Set(['input_ids', 'attention_mask', 'position_ids']);
    for (const v of inst.model.graph!.input ?? []) {
      const name = v.name!;
      if (tokenInputs.has(name)) continue;
      const data = opts.weights?.get(name);
      if (!data) throw new InputError(`model input ${name} is neither input_ids, attention_mask nor position_ids; symprune cannot feed it`);
      if (!(data instanceof Float32Array)) {
        weightFeeds[name] = data;
        continue;
      }
      const elem = v.type?.tensorType?.elemType ?? DataType.FLOAT;
      if (elem === DataType.FLOAT16) {
        const half = new Uint16Array(data.length);
        for (let i = 0; i < data.length; i++) half[i] = floatToHalf(data[i]!);
        weightFeeds[name] = new ort.Tensor('float16', half, declaredDims(v));
      } else if (elem === DataType.FLOAT) {
        weightFeeds[name] = new ort.Tensor('float32', data, declaredDims(v));
      } else {
        throw new InputError(`model input ${name}: weights of ONNX type ${elem} cannot be fed (float32 or float16 only)`);
      }
    }
    const collector = new StatsCollector(inst);
    const bs = Math.max(1, opts.batchSize ?? 8);
    for (let s = 0; s < windows.length; s += bs) {
      const batch = windows.slice(s, s + bs);
      const out = await session.run({ ...tokenFeeds(inst.model, batch), ...weightFeeds });
      collector.add(out, batch.length);
      for (const t of Object.values(out)) t.dispose?.();
      opts.onBatch?.(Math.min(s + bs, windows.length), windows.length);
    }
    return collector.result();
  } finally {
    await session.release();
  }
}

/** Sums the statistics outputs of an instrumented model's runs, per distinct layer input. */
export class StatsCollector {
  private readonly sq = new Map<string, SquareSumAccumulator>();
  private readonly gr = new Map<string, HessianAccumulator>();
  private sequences = 0;
  constructor(private readonly inst: Instrumented) {
    for (const e of inst.inputs) {
      if (e.sumSquares) this.sq.set(e.input, new SquareSumAccumulator(e.channels));
      if (e.gram) this.gr.set(e.input, new HessianAccumulator(e.channels));
    }
  }

  /** Add one run's outputs over `sequences` windows. */
  add(out: ort.InferenceSession.ReturnType, sequences: number): void {
    for (const e of this.inst.inputs) {
      if (e.sumSquares) this.sq.get(e.input)!.add(out[e.sumSquares]!.data as Float32Array, sequences);
      if (e.gram) this.gr.get(e.input)!.add(out[e.gram]!.data as Float32Array, sequences);
    }
    this.sequences += sequences;
  }

  /** X (mean over sequences) and the Gram accumulators, keyed by layer name. */
  result(): CollectedStats {
    const X = new Map<string, Float32Array>();
    const gram = new Map<string, HessianAccumulator>();
    for (const e of this.inst.inputs) {
      const x = this.sq.get(e.input)?.mean();
      for (const name of e.layers) {
        if (x) X.set(name, x);
        if (this.gr.has(e.input)) gram.set(name, this.gr.get(e.input)!);
      }
    }
    return { X, gram, sequences: this.sequences };
  }
}
