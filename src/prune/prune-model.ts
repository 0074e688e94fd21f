/**
 * Prune a whole model with one method, layer by layer, as Wanda, SparseGPT and
 * Pruner-Zero do in PyTorch, block by block (block-prune.ts):
 *
 * - one-shot: every statistic comes from the dense model.
 * - sequential: block i's X (or SparseGPT's Hessian) is measured on inputs that went
 *   through the already-pruned blocks 0..i-1, with block i itself still dense for all
 *   of its layers; then block i is pruned.
 *
 * The model may be in memory (pruned in place) or a WeightSource read tensor by
 * tensor, its pruned tensors handed to a sink as each block is done. G always comes
 * from the dense model: computed once before pruning (by the whole model's gradient
 * graph, or block by block into a scratch file), or read from a statistics file one
 * layer at a time.
 */
import os from 'node:os';
import { InputError } from '../errors.ts';
import type { ModelProto, TensorProto } from '../onnx/proto.ts';
import { memorySource, modelWeightBytes, type WeightSource } from '../onnx/weight-source.ts';
import type { Device } from '../onnx/session.ts';
import { discoverLayers, readLayerWeight, type PrunableLayer } from './discover.ts';
import { computeGradientNorms } from './gradients.ts';
import { scratchGradientKey, streamedGradientNorms, streamedGradientNormsToScratch } from './stream-gradients.ts';
import { ScratchFloats } from './scratch-floats.ts';
import { planSegments } from '../onnx/block-split.ts';
import { tensorDims } from '../onnx/tensor.ts';
import { modelVocabSize } from './calibration-windows.ts';
import { streamedStatistics } from './stream-stats.ts';
import type { LayerStats, StatsNeed } from './layer-stats.ts';
import type { PruneMethod } from './baselines.ts';
import { pruneBlocks, type CalibrationMode } from './block-prune.ts';
import type { LayerReport } from './prune-layer.ts';
import { patternName, type MaskSpec, type Pattern } from './score.ts';
import { allocationName, layerAllocation, type Allocation, type AllocationReport } from './allocation.ts';

export type { CalibrationMode } from './block-prune.ts';
export type { LayerReport } from './prune-layer.ts';

/** Precomputed statistics, e.g. a LayerStatsFile (read one layer at a time). */
export interface StatsSource {
  has: StatsNeed;
  get(layer: string): LayerStats;
}

export interface PruneModelOptions {
  method: PruneMethod;
  sparsity: number;
  pattern: Pattern;
  /** Default: sequential, as the reference implementations. */
  calibration?: CalibrationMode;
  /** Calibration windows; needed unless every statistic the method reads is given. */
  windows?: Int32Array[];
  /** Precomputed statistics: G is used whenever present; X only for one-shot runs. */
  stats?: StatsSource;
  /** Layers to prune (default: discoverLayers(model)). */
  layers?: PrunableLayer[];
  threads?: number;
  device?: Device;
  /** Sequences per calibration run (default 8). */
  batchSize?: number;
  /** How G is computed when needed (see gradientPlan); default whole-model when the model is in memory. */
  gradients?: 'whole' | 'streamed';
  /** Layer-wise sparsity (default uniform); OWL reads dense X and weights before pruning. */
  allocation?: Allocation;
  /** Sparsity per decoder block, given outright (e.g. a searched allocation); wins over `allocation`. */
  blockSparsity?: Map<number, number>;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface PruneResult {
  method: string;
  label: string;
  sparsity: number;
  pattern: string;
  calibration: CalibrationMode;
  nsamples: number;
  seqlen: number;
  /** How the sparsity was spread over the blocks, and each block's sparsity (uniform: empty). */
  allocation: AllocationReport;
  layers: LayerReport[];
  overall: { pruned: number; total: number; sparsity: number };
  seconds: { gradients: number; calibration: number; prune: number; total: number };
}

/** Stats held in memory (e.g. shared between the methods of one `baselines` run). */
export class MemoryStats implements StatsSource {
  constructor(readonly X: Map<string, Float32Array> | null, readonly G: Map<string, Float32Array> | null) {}
  get has(): StatsNeed {
    return { X: this.X !== null, G: this.G !== null };
  }
  get(layer: string): LayerStats {
    return { X: this.X?.get(layer) ?? null, G: this.G?.get(layer) ?? null };
  }
}

/** The layers of a model, checked to be non-empty. */
export function prunableLayers(model: ModelProto): PrunableLayer[] {
  const layers = discoverLayers(model);
  if (layers.length === 0) throw new InputError('model has no prunable layers (no MatMul/Gemm with a 2-D float weight inside decoder blocks)');
  return layers;
}

export interface DenseGradientOptions {
  threads?: number;
  device?: Device;
  /**
   * Memory budget: G comes from the whole model's gradient graph when that fits,
   * block by block otherwise (default: half of the RAM, as --max-memory).
   */
  maxMemory?: number;
  onBatch?: (d: number, t: number) => void;
}

/**
 * Dense-model G of every layer: by the whole model's gradient graph when the model is
 * in memory and its gradients fit the budget, block by block (stream-gradients.ts,
 * same values) otherwise.
 */
export function denseGradients(model: ModelProto | WeightSource, layers: PrunableLayer[], windows: Int32Array[], opts: DenseGradientOptions = {}): Promise<Map<string, Float32Array>> {
  const inMemory = 'resolve' in model ? null : model;
  const source = inMemory ? memorySource(inMemory) : (model as WeightSource);
  if (inMemory && gradientMemoryBytes(source) <= (opts.maxMemory ?? os.totalmem() / 2)) {
    return computeGradientNorms(inMemory, layers, windows, { threads: opts.threads, onProgress: opts.onBatch });
  }
  return streamedGradientNorms(source, layers, windows, { threads: opts.threads, device: opts.device, onProgress: opts.onBatch });
}

/**
 * Memory G needs from the whole model's gradient graph: the weights, onnxruntime's
 * copy, one window's gradients and their float64 sums (twice the float32 size) and the
 * float32 G are all held at once: about 6 times the float32 weights.
 */
export function gradientMemoryBytes(source: WeightSource): number {
  return 6 * modelWeightBytes(source.model);
}

/**
 * Memory G needs block by block with the scratch file (streamedGradientNormsToScratch):
 * three copies of nsamples x seqlen x hidden floats (the embedding's
 * output, the upstream gradient and the input gradient; the other blocks' inputs and G
 * wait on disk); the largest layer's G; the largest segment's gradient graph: its
 * float32 weights twice (as read, and onnxruntime's packed copy) plus three times its
 * prunable weights (one window's gradients and their float64 sums); and the head's
 * activations for one window (logits, softmax and their gradients, seqlen x vocabulary
 * floats eight times over). Like the other budgets (wholeModelBytes), it leaves out the
 * runtime itself (Node and onnxruntime, about 0.35 GB): on the TinyLlama-shaped model
 * (1 block, 16 x 256 tokens) it gives 1.2 GiB, and `stats` peaked at 1.5 GB RSS.
 */
export function streamedGradientMemoryBytes(source: WeightSource, layers: PrunableLayer[], nsamples: number, seqlen: number): number {
  const g = source.model.graph!;
  const elems = new Map((g.initializer ?? []).map((t) => [t.name!, tensorDims(t).reduce((a, d) => a * d, 1)]));
  const prunable = new Set(layers.map((l) => l.initializer));
  const plan = planSegments(source.model);
  const segment = Math.max(...plan.segments.map((s) => s.initializers.reduce((a, n) => a + (2 + (prunable.has(n) ? 3 : 0)) * (elems.get(n) ?? 0), 0)));
  const hidden = Math.min(...layers.map((l) => l.in));
  const layer = Math.max(...layers.map((l) => l.out * l.in));
  const head = 8 * seqlen * (modelVocabSize(source.model) ?? 0);
  return 4 * (3 * nsamples * seqlen * hidden + layer + segment + head);
}

/**
 * How G is computed under the budget: 'whole' when the whole model's gradient graph
 * fits, 'streamed' (block by block) when that does; InputError when neither does.
 */
export function gradientPlan(source: WeightSource, layers: PrunableLayer[], nsamples: number, seqlen: number, maxMemory: number): 'whole' | 'streamed' {
  if (gradientMemoryBytes(source) <= maxMemory) return 'whole';
  const need = streamedGradientMemoryBytes(source, layers, nsamples, seqlen);
  if (need <= maxMemory) return 'streamed';
  throw new InputError(`G needs about ${gib(need)} GiB even block by block, over --max-memory ${gib(maxMemory)} GiB; raise --max-memory, use fewer --nsamples or a shorter --seqlen, or use methods without G`);
}

const gib = (b: number) => (b / 2 ** 30).toFixed(1);

/** Dense-model X of every layer, block by block. */
export async function denseX(model: ModelProto | WeightSource, layers: PrunableLayer[], windows: Int32Array[], opts: { threads?: number; device?: Device; batchSize?: number; onBatch?: (d: number, t: number) => void } = {}): Promise<Map<string, Float32Array>> {
  const source = 'resolve' in model ? model : memorySource(model);
  return (await streamedStatistics(source, layers, windows, { ...opts, sumSquares: true })).X;
}

function requireWindows(windows: Int32Array[] | undefined, what: string): Int32Array[] {
  if (!windows || windows.length === 0) throw new InputError(`${what} needs calibration windows (give --data/--nsamples, or --stats with the statistics)`);
  return windows;
}

/** The mask spec of a run, with N:M layer widths checked. */
function maskSpecOf(method: PruneMethod, opts: PruneModelOptions, layers: PrunableLayer[]): MaskSpec {
  const pattern = opts.pattern;
  if (pattern.kind === 'nm') {
    const bad = layers.find((l) => l.in % pattern.m !== 0);
    if (bad) throw new InputError(`pattern ${patternName(pattern)}: layer ${bad.name} has ${bad.in} inputs, not a multiple of ${pattern.m}`);
  }
  return { sparsity: pattern.kind === 'nm' ? pattern.n / pattern.m : opts.sparsity, pattern, grouping: method.grouping };
}

/** Whether the method measures statistics on the windows (else they all come from `stats`). */
function calibrates(method: PruneMethod, mode: CalibrationMode, stats: StatsSource | undefined): boolean {
  return method.kind === 'sparsegpt' || (method.needs.X && !(mode === 'one-shot' && stats?.has.X));
}

/** G of every layer, read one layer at a time; close() lets go of it (and its scratch file). */
export interface GradientStore {
  get(layer: string): Float32Array | undefined;
  close(): void;
}

/**
 * Dense-model G under plan `how` (gradientPlan): 'whole' by the whole model's gradient
 * graph (`model` must be in memory), 'streamed' block by block from `source` with the
 * hidden states and G parked in a scratch file in the temporary folder.
 */
export async function computeGradients(source: WeightSource, model: ModelProto | null, layers: PrunableLayer[], windows: Int32Array[], how: 'whole' | 'streamed', opts: { threads?: number; device?: Device; onBatch?: (d: number, t: number) => void } = {}): Promise<GradientStore> {
  if (how === 'whole') {
    if (!model) throw new Error('computeGradients: the whole-model gradient graph needs the model in memory');
    const G = await computeGradientNorms(model, layers, windows, { threads: opts.threads, onProgress: opts.onBatch });
    return { get: (l) => G.get(l), close: () => {} };
  }
  const scratch = ScratchFloats.open();
  try {
    await streamedGradientNormsToScratch(source, layers, windows, scratch, { threads: opts.threads, device: opts.device, onProgress: opts.onBatch });
  } catch (e) {
    scratch.close();
    throw e;
  }
  return { get: (l) => scratch.get(scratchGradientKey(l)), close: () => scratch.close() };
}

/**
 * G of every layer when the method reads it and no statistics file gives it: by the
 * whole model's gradient graph when the model is in memory and opts.gradients is not
 * 'streamed', block by block from `source` otherwise.
 */
async function gradientsFor(source: WeightSource, model: ModelProto | null, layers: PrunableLayer[], opts: PruneModelOptions): Promise<GradientStore | null> {
  if (!opts.method.needs.G || opts.stats?.has.G) return null;
  const windows = requireWindows(opts.windows, `metric ${opts.method.label} (G)`);
  opts.onProgress?.('gradients', 0, 1);
  const how = model && opts.gradients !== 'streamed' ? 'whole' : 'streamed';
  return computeGradients(source, model, layers, windows, how, { threads: opts.threads, device: opts.device, onBatch: (d, n) => opts.onProgress?.('gradients', d, n) });
}

/**
 * The sparsity of each decoder block under opts.allocation / opts.blockSparsity
 * (uniform: empty map). OWL reads every layer's dense weights and X, so it needs the
 * model in memory.
 */
async function blockAllocation(model: ModelProto | null, layers: PrunableLayer[], opts: PruneModelOptions): Promise<{ sparsity: Map<number, number>; report: PruneResult['allocation'] }> {
  const pattern = opts.pattern;
  const given = opts.blockSparsity;
  const a = opts.allocation ?? { kind: 'uniform' };
  if ((given || a.kind !== 'uniform') && pattern.kind === 'nm') throw new InputError(`layer-wise allocation needs unstructured sparsity (pattern ${patternName(pattern)} fixes every block at 50%)`);
  if (given) return { sparsity: given, report: { name: 'given', blocks: [...given].map(([block, sparsity]) => ({ block, sparsity })) } };
  if (a.kind === 'uniform') return { sparsity: new Map(), report: { name: 'uniform', blocks: [] } };
  if (!model) throw new InputError(`--allocation ${allocationName(a)} reads every layer's dense weights at once: it needs a model that fits in memory`);
  // OWL and expressions read the dense model's X, whatever the calibration mode; given statistics are dense.
  const X = opts.stats?.has.X
    ? null
    : await denseX(model, layers, requireWindows(opts.windows, 'layer-wise allocation (X)'), { threads: opts.threads, device: opts.device, batchSize: opts.batchSize });
  return layerAllocation(a, layers, (l) => readLayerWeight(model, l), (l) => X?.get(l.name) ?? opts.stats!.get(l.name).X!, opts.sparsity);
}

/**
 * Prune `model` in place with `opts.method`. Returns what was done, per layer and
 * overall; the caller writes the model and the report.
 */
export function pruneModel(model: ModelProto, opts: PruneModelOptions): Promise<PruneResult> {
  return pruneFromSource(memorySource(model), opts, model);
}

/**
 * Prune the model of `source`, block by block, handing each block's pruned tensors
 * to `opts.sink`. `inMemory` is the same model when all of it is in memory (needed
 * only to compute G).
 */
export async function pruneFromSource(source: WeightSource, opts: PruneModelOptions & { sink?: (t: TensorProto[]) => Promise<void> }, inMemory: ModelProto | null = null): Promise<PruneResult> {
  const t0 = performance.now();
  const method = opts.method;
  const layers = opts.layers ?? prunableLayers(source.model);
  if (layers.length === 0) throw new InputError('model has no prunable layers');
  const mode: CalibrationMode = opts.calibration ?? 'sequential';
  const spec = maskSpecOf(method, opts, layers);
  const tg = performance.now();
  const gradients = await gradientsFor(source, inMemory, layers, opts);
  const gradSeconds = gradients ? (performance.now() - tg) / 1000 : 0;
  try {
    const alloc = await blockAllocation(inMemory, layers, opts);
    const calibrate = calibrates(method, mode, opts.stats);
    const stats = (l: PrunableLayer): LayerStats => {
      const fromFile = opts.stats && ((method.needs.X && !calibrate) || (method.needs.G && !gradients)) ? opts.stats.get(l.name) : null;
      return { X: calibrate ? null : fromFile?.X ?? null, G: gradients?.get(l.name) ?? fromFile?.G ?? null };
    };
    const r = await pruneBlocks(source, {
      method,
      spec,
      mode,
      layers,
      windows: calibrate ? requireWindows(opts.windows, `method ${method.label}`) : undefined,
      stats,
      blockSparsity: alloc.sparsity,
      threads: opts.threads,
      device: opts.device,
      batchSize: opts.batchSize,
      sink: opts.sink,
      onProgress: opts.onProgress,
    });
    const pruned = r.reports.reduce((a, x) => a + x.pruned, 0);
    const total = r.reports.reduce((a, x) => a + x.out * x.in, 0);
    return {
      method: method.name,
      label: method.label,
      sparsity: spec.sparsity,
      pattern: patternName(opts.pattern),
      allocation: alloc.report,
      calibration: mode,
      nsamples: opts.windows?.length ?? 0,
      seqlen: opts.windows?.[0]?.length ?? 0,
      layers: r.reports,
      overall: { pruned, total, sparsity: total > 0 ? pruned / total : 0 },
      seconds: { gradients: gradSeconds, calibration: r.seconds.calibration, prune: r.seconds.prune, total: (performance.now() - t0) / 1000 },
    };
  } finally {
    gradients?.close();
  }
}
