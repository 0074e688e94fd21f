/**
 * Metric -> per-layer scores -> mask -> pruned weights, on plain typed arrays. This is
 * both what `symprune prune` does per layer and the inner loop of the search's fitness
 * (run inside worker threads), so it knows nothing of ONNX or of the model: a layer is
 * its [out, in] weights and its statistics, and scratch buffers are reused across
 * layers and calls.
 *
 * Lower score = pruned. Comparison groups: an output row (unstructured, the default of
 * Wanda and Pruner-Zero), the whole layer (magnitude's and RIA's own convention), or
 * M consecutive inputs of a row (N:M).
 */
import { InputError } from '../errors.ts';
import { nmMask, unstructuredMask, type MaskResult, type TerminalData } from '../search-space/index.ts';

export type { MaskResult };

export type Pattern = { kind: 'unstructured' } | { kind: 'nm'; n: number; m: number };

/** Where the lowest scores are compared for unstructured sparsity. N:M always uses its groups. */
export type Grouping = 'row' | 'layer';

export interface MaskSpec {
  sparsity: number;
  pattern: Pattern;
  grouping: Grouping;
}

/** A compiled metric: scores for every weight of a layer (search-space compileTree output). */
export type Scorer = (data: TerminalData, out?: Float32Array) => Float32Array;

/** One layer as the scoring code sees it (PyTorch layout). */
export interface LayerArrays {
  rows: number;
  cols: number;
  /** Signed weights [rows * cols]. */
  weight: Float32Array;
  /** [cols], or null when the metric does not read X. */
  X: Float32Array | null;
  /** [rows * cols], or null when the metric does not read G. */
  G: Float32Array | null;
}

/** `unstructured`, `2:4`, `4:8` (any N:M pruning N of every M inputs, at sparsity N/M = 0.5). */
export function parsePattern(text: string, sparsity: number): Pattern {
  checkSparsity(sparsity);
  const t = text.trim().toLowerCase();
  if (t === 'unstructured') return { kind: 'unstructured' };
  const m = /^(\d+):(\d+)$/.exec(t);
  if (!m) throw new InputError(`--pattern ${text}: expected unstructured, 2:4 or 4:8`);
  const n = Number(m[1]);
  const mm = Number(m[2]);
  if (!(n > 0 && mm > n && 2 * n === mm)) throw new InputError(`--pattern ${text}: N:M patterns prune N of every M weights with M = 2N (2:4, 4:8)`);
  if (sparsity !== 0.5) throw new InputError(`--sparsity ${sparsity}: pattern ${text} prunes exactly 50%; use --sparsity 0.5`);
  return { kind: 'nm', n, m: mm };
}

export function checkSparsity(sparsity: number): void {
  if (!(Number.isFinite(sparsity) && sparsity > 0 && sparsity < 1)) throw new InputError(`--sparsity ${sparsity}: must be a number strictly between 0 and 1`);
}

export function patternName(p: Pattern): string {
  return p.kind === 'unstructured' ? 'unstructured' : `${p.n}:${p.m}`;
}

/**
 * Exactly floor(count · sparsity) lowest scores of the whole layer pruned, one
 * threshold for the layer; ties at the threshold go by position, NaN scores sort last
 * (kept), as torch.sort does.
 */
export function layerThresholdMask(scores: Float32Array, sparsity: number, out?: Uint8Array): MaskResult {
  const n = scores.length;
  const mask = out ?? new Uint8Array(n);
  mask.fill(0);
  let nanCount = 0;
  for (let i = 0; i < n; i++) if (scores[i] !== scores[i]) nanCount++;
  const k = Math.floor(n * sparsity);
  if (k === 0) return { mask, nanCount, pruned: 0 };
  const sorted = Float32Array.from(scores).sort(); // numeric, NaN last
  const thresh = sorted[k - 1]!;
  let taken = 0;
  for (let i = 0; i < n; i++) {
    if (scores[i]! < thresh) {
      mask[i] = 1;
      taken++;
    }
  }
  for (let i = 0; i < n && taken < k; i++) {
    if (scores[i] === thresh || (thresh !== thresh && scores[i] !== scores[i])) {
      mask[i] = 1;
      taken++;
    }
  }
  return { mask, nanCount, pruned: k };
}

/** The mask of one layer's scores under a spec. */
export function maskScores(scores: Float32Array, rows: number, cols: number, spec: MaskSpec): MaskResult {
  if (spec.pattern.kind === 'nm') {
    if (cols % spec.pattern.m !== 0) throw new InputError(`pattern ${spec.pattern.n}:${spec.pattern.m}: a layer has ${cols} inputs, not a multiple of ${spec.pattern.m}`);
    return nmMask(scores, rows, cols, spec.pattern.n, spec.pattern.m);
  }
  if (spec.grouping === 'layer') return layerThresholdMask(scores, spec.sparsity);
  return unstructuredMask(scores, rows, cols, spec.sparsity);
}

/** Reusable buffers for scoring many layers without reallocating (one per worker). */
export class ScoreScratch {
  private absW = new Float32Array(0);
  private scores = new Float32Array(0);
  absWeights(weight: Float32Array): Float32Array {
    if (this.absW.length < weight.length) this.absW = new Float32Array(weight.length);
    const a = this.absW.subarray(0, weight.length);
    for (let i = 0; i < weight.length; i++) a[i] = Math.abs(weight[i]!);
    return a;
  }
  scoreBuffer(n: number): Float32Array {
    if (this.scores.length < n) this.scores = new Float32Array(n);
    return this.scores.subarray(0, n);
  }
}

/** Terminal data of a layer: W = |weight|, X and G as given (empty X when absent). */
export function terminalData(layer: LayerArrays, scratch: ScoreScratch): TerminalData {
  return {
    rows: layer.rows,
    cols: layer.cols,
    W: scratch.absWeights(layer.weight),
    X: layer.X ?? new Float32Array(layer.cols),
    G: layer.G,
  };
}

/** Scores of a layer under a compiled metric (a view into scratch unless `out` is given). */
export function scoreLayer(scorer: Scorer, layer: LayerArrays, scratch: ScoreScratch, out?: Float32Array): Float32Array {
  const data = terminalData(layer, scratch);
  return scorer(data, out ?? scratch.scoreBuffer(layer.rows * layer.cols));
}

/** Zero the masked weights: into `out` (may be `weight` itself); returns the number of zeros written. */
export function applyMask(weight: Float32Array, mask: Uint8Array, out: Float32Array = weight): number {
  let pruned = 0;
  for (let i = 0; i < weight.length; i++) {
    if (mask[i]) {
      out[i] = 0;
      pruned++;
    } else if (out !== weight) {
      out[i] = weight[i]!;
    }
  }
  return pruned;
}

export interface SparsityStats {
  pruned: number;
  total: number;
  sparsity: number;
  /** Least and most pruned fraction over output rows. */
  rowMin: number;
  rowMax: number;
}

/** Achieved sparsity of a mask, overall and over rows. */
export function maskSparsity(mask: Uint8Array, rows: number, cols: number): SparsityStats {
  let pruned = 0;
  let rowMin = 1;
  let rowMax = 0;
  for (let r = 0; r < rows; r++) {
    let c = 0;
    for (let j = r * cols; j < (r + 1) * cols; j++) c += mask[j]!;
    pruned += c;
    rowMin = Math.min(rowMin, c / cols);
    rowMax = Math.max(rowMax, c / cols);
  }
  return { pruned, total: rows * cols, sparsity: pruned / (rows * cols), rowMin, rowMax };
}

