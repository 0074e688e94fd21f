/**
 * Prune a whole model with one method, layer by layer, as Wanda, SparseGPT and
 * Pruner-Zero do in PyTorch:
 *
 * - one-shot: every statistic comes from the dense model (one calibration pass).
 * - sequential: block by block; block i's X (or SparseGPT's Hessian) is measured on
 *   inputs that went through the already-pruned blocks 0..i-1, with block i itself
 *   still dense for all of its layers; then block i is pruned.
 *
 * Calibration sessions get the prunable weights as graph inputs, fed as views of the
 * model's own tensor bytes, so no session holds a copy of them; the model passed in
 * is updated in place, layer by layer (at most one extra copy of the weights: the
 * dense bytes one-shot SparseGPT still reads while later blocks are calibrated). G always comes from the
 * dense model (computed once, or read from a statistics file one layer at a time).
 */
import { InputError } from '../errors.ts';
import type { ModelProto } from '../onnx/proto.ts';
import { cloneModel, initializersToInputs } from '../onnx/graph-edit.ts';
import { discoverLayers, readLayerWeight, writeLayerWeight, type PrunableLayer } from './discover.ts';
import { computeGradientNorms } from './gradients.ts';
import { collectStatistics, initializerFeeds, type CollectedStats } from './calibration.ts';
import type { LayerStats, StatsNeed } from './layer-stats.ts';
import type { PruneMethod } from './baselines.ts';
import { sparseGpt } from './sparsegpt.ts';
import { applyMask, maskScores, maskSparsity, patternName, ScoreScratch, type Pattern } from './score.ts';
import { allocationName, owlAllocation, type Allocation } from './allocation.ts';

export type CalibrationMode = 'one-shot' | 'sequential';

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
  /** Sequences per calibration run (default 8). */
  batchSize?: number;
  /** Layer-wise sparsity (default uniform); OWL reads dense X and weights before pruning. */
  allocation?: Allocation;
  /** Sparsity per decoder block, given outright (e.g. a searched allocation); wins over `allocation`. */
  blockSparsity?: Map<number, number>;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface LayerReport {
  name: string;
  block: number;
  out: number;
  in: number;
  pruned: number;
  sparsity: number;
  /** Least and most pruned fraction over the layer's output rows. */
  rowMin: number;
  rowMax: number;
  /** Weights whose score was NaN (0 for SparseGPT). */
  nanCount: number;
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
  allocation: { name: string; blocks: Array<{ block: number; sparsity: number; outlierRatio?: number }> };
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

/** Dense-model G of every layer, by the gradient graphs. */
export function denseGradients(model: ModelProto, layers: PrunableLayer[], windows: Int32Array[], opts: { threads?: number; onBatch?: (d: number, t: number) => void } = {}): Promise<Map<string, Float32Array>> {
  return computeGradientNorms(model, layers, windows, { threads: opts.threads, onProgress: opts.onBatch });
}

/**
 * A calibration model: the prunable weights become graph inputs (fed per run with
 * initializerFeeds), so its sessions hold no copy of them.
 */
export function calibrationModel(model: ModelProto, layers: PrunableLayer[]): { base: ModelProto; initializers: string[] } {
  const base = cloneModel(model);
  const initializers = [...new Set(layers.map((l) => l.initializer))];
  initializersToInputs(base, initializers);
  return { base, initializers };
}

/** Dense-model X of every layer, in one instrumented pass. */
export async function denseX(model: ModelProto, layers: PrunableLayer[], windows: Int32Array[], opts: { threads?: number; batchSize?: number; onBatch?: (d: number, t: number) => void } = {}): Promise<Map<string, Float32Array>> {
  const { base, initializers } = calibrationModel(model, layers);
  const st = await collectStatistics(base, layers, windows, { ...opts, sumSquares: true, weights: initializerFeeds(model, initializers) });
  return st.X;
}

function requireWindows(windows: Int32Array[] | undefined, what: string): Int32Array[] {
  if (!windows || windows.length === 0) throw new InputError(`${what} needs calibration windows (give --data/--nsamples, or --stats with the statistics)`);
  return windows;
}

/** Blocks in pruning order: decoder blocks ascending, layers outside blocks (-1) last. */
function blocksOf(layers: PrunableLayer[]): PrunableLayer[][] {
  const keys = [...new Set(layers.map((l) => l.block))].sort((a, b) => (a < 0 ? 1 : b < 0 ? -1 : a - b));
  return keys.map((k) => layers.filter((l) => l.block === k));
}

/** The sparsity of each decoder block under opts.allocation / opts.blockSparsity (uniform: empty map). */
async function blockAllocation(
  model: ModelProto,
  layers: PrunableLayer[],
  opts: PruneModelOptions,
  pattern: Pattern,
): Promise<{ sparsity: Map<number, number>; report: PruneResult['allocation'] }> {
  const given = opts.blockSparsity;
  const a = opts.allocation ?? { kind: 'uniform' };
  if ((given || a.kind !== 'uniform') && pattern.kind === 'nm') throw new InputError(`layer-wise allocation needs unstructured sparsity (pattern ${patternName(pattern)} fixes every block at 50%)`);
  if (given) return { sparsity: given, report: { name: 'given', blocks: [...given].map(([block, sparsity]) => ({ block, sparsity })) } };
  if (a.kind === 'uniform') return { sparsity: new Map(), report: { name: 'uniform', blocks: [] } };
  // OWL reads the dense model's X, whatever the calibration mode; given statistics are dense.
  const X = opts.stats?.has.X
    ? null
    : await denseX(model, layers, requireWindows(opts.windows, 'OWL allocation (X)'), { threads: opts.threads, batchSize: opts.batchSize });
  const r = owlAllocation(layers, (l) => readLayerWeight(model, l), (l) => X?.get(l.name) ?? opts.stats!.get(l.name).X!, { sparsity: opts.sparsity, m: a.m, lambda: a.lambda });
  return { sparsity: r.sparsity, report: { name: allocationName(a), blocks: r.blocks.map((b, i) => ({ block: b, sparsity: r.sparsity.get(b)!, outlierRatio: r.ratios[i]! })) } };
}

/**
 * Prune `model` in place with `opts.method`. Returns what was done, per layer and
 * overall; the caller writes the model and the report.
 */
export async function pruneModel(model: ModelProto, opts: PruneModelOptions): Promise<PruneResult> {
  const t0 = performance.now();
  const method = opts.method;
  const layers = opts.layers ?? prunableLayers(model);
  if (layers.length === 0) throw new InputError('model has no prunable layers');
  const mode: CalibrationMode = opts.calibration ?? 'sequential';
  const pattern = opts.pattern;
  const spec = { sparsity: pattern.kind === 'nm' ? pattern.n / pattern.m : opts.sparsity, pattern, grouping: method.grouping };
  if (pattern.kind === 'nm') {
    const bad = layers.find((l) => l.in % pattern.m !== 0);
    if (bad) throw new InputError(`pattern ${patternName(pattern)}: layer ${bad.name} has ${bad.in} inputs, not a multiple of ${pattern.m}`);
  }
  const progress = opts.onProgress ?? (() => {});
  const collectOpts = { threads: opts.threads, batchSize: opts.batchSize };
  const seconds = { gradients: 0, calibration: 0, prune: 0, total: 0 };

  // G from the dense model, before anything changes.
  let gradients: Map<string, Float32Array> | null = null;
  const statsG = method.needs.G && opts.stats?.has.G;
  if (method.needs.G && !statsG) {
    const t = performance.now();
    progress('gradients', 0, 1);
    gradients = await denseGradients(model, layers, requireWindows(opts.windows, `metric ${method.label} (G)`), { threads: opts.threads, onBatch: (d, n) => progress('gradients', d, n) });
    seconds.gradients = (performance.now() - t) / 1000;
  }
  const getG = (name: string): Float32Array | null => {
    if (!method.needs.G) return null;
    return gradients ? gradients.get(name) ?? null : opts.stats!.get(name).G;
  };

  const alloc = await blockAllocation(model, layers, opts, pattern);
  const sparsityOf = (layer: PrunableLayer): number => alloc.sparsity.get(layer.block) ?? spec.sparsity;

  const reports: LayerReport[] = [];
  const scratch = new ScoreScratch();
  let done = 0;

  /** Prune one layer given its statistics and write it into the model. */
  const pruneOne = (layer: PrunableLayer, X: Float32Array | null, st: CollectedStats | null): void => {
    const t = performance.now();
    const w = readLayerWeight(model, layer);
    let mask: Uint8Array;
    let nanCount = 0;
    if (method.kind === 'sparsegpt') {
      const acc = st?.gram.get(layer.name);
      if (!acc) throw new Error(`no Hessian collected for ${layer.name}`);
      const res = sparseGpt(w, layer.out, layer.in, acc.hessian(), {
        sparsity: sparsityOf(layer),
        n: pattern.kind === 'nm' ? pattern.n : 0,
        m: pattern.kind === 'nm' ? pattern.m : 0,
      });
      mask = res.mask;
    } else {
      if (method.needs.X && !X) throw new Error(`no X for ${layer.name}`);
      const G = getG(layer.name);
      if (method.needs.G && !G) throw new InputError(`no G for layer ${layer.name}`);
      const arrays = { rows: layer.out, cols: layer.in, weight: w, X, G };
      const scores = method.score!(arrays, { name: layer.name, scratch });
      const res = maskScores(scores, layer.out, layer.in, { ...spec, sparsity: sparsityOf(layer) });
      if (res.nanCount === scores.length) throw new InputError(`metric ${method.label} yields NaN for every weight of ${layer.name}`);
      nanCount = res.nanCount;
      mask = res.mask;
      applyMask(w, mask);
    }
    writeLayerWeight(model, layer, w);
    const s = maskSparsity(mask, layer.out, layer.in);
    reports.push({ name: layer.name, block: layer.block, out: layer.out, in: layer.in, pruned: s.pruned, sparsity: s.sparsity, rowMin: s.rowMin, rowMax: s.rowMax, nanCount });
    seconds.prune += (performance.now() - t) / 1000;
    progress('prune', ++done, layers.length);
  };

  const perBlock = method.kind === 'sparsegpt' || (mode === 'sequential' && method.needs.X);
  if (!perBlock) {
    // One pass on the dense model (or statistics from the file), then every layer.
    let X: Map<string, Float32Array> | null = null;
    if (method.needs.X) {
      if (opts.stats?.has.X && mode === 'one-shot') {
        X = null; // read per layer below
      } else {
        const t = performance.now();
        X = await denseX(model, layers, requireWindows(opts.windows, `method ${method.label} (X)`), { ...collectOpts, onBatch: (d, n) => progress('calibration', d, n) });
        seconds.calibration += (performance.now() - t) / 1000;
      }
    }
    for (const layer of layers) pruneOne(layer, method.needs.X ? X?.get(layer.name) ?? opts.stats!.get(layer.name).X : null, null);
  } else {
    const windows = requireWindows(opts.windows, `method ${method.label}`);
    // Weights are fed as views of the model's tensors: one-shot keeps the dense views
    // taken now (writeLayerWeight gives pruned layers new bytes, the old ones stay
    // alive through the views: at most one extra copy), sequential takes the current
    // weights before each block.
    const { base, initializers } = calibrationModel(model, layers);
    const denseFeeds = mode === 'one-shot' ? initializerFeeds(model, initializers) : null;
    const blocks = blocksOf(layers);
    for (const [bi, block] of blocks.entries()) {
      const t = performance.now();
      const st = await collectStatistics(base, block, windows, {
        ...collectOpts,
        weights: denseFeeds ?? initializerFeeds(model, initializers),
        sumSquares: method.needs.X,
        gram: method.kind === 'sparsegpt',
        onBatch: (d, n) => progress(`calibration block ${bi + 1}/${blocks.length}`, d, n),
      });
      seconds.calibration += (performance.now() - t) / 1000;
      for (const layer of block) pruneOne(layer, st.X.get(layer.name) ?? null, st);
    }
  }

  const pruned = reports.reduce((a, r) => a + r.pruned, 0);
  const total = reports.reduce((a, r) => a + r.out * r.in, 0);
  seconds.total = (performance.now() - t0) / 1000;
  return {
    method: method.name,
    label: method.label,
    sparsity: spec.sparsity,
    pattern: patternName(pattern),
    allocation: alloc.report,
    calibration: mode,
    nsamples: opts.windows?.length ?? 0,
    seqlen: opts.windows?.[0]?.length ?? 0,
    layers: reports,
    overall: { pruned, total, sparsity: total > 0 ? pruned / total : 0 },
    seconds,
  };
}
