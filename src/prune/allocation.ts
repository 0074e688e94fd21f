/**
 * Layer-wise sparsity: how an overall sparsity s is spread over the decoder blocks.
 *
 * - uniform: every block at s (Wanda, SparseGPT, Pruner-Zero).
 * - owl: OWL (Yin et al., ICML 2024), as its released `prune_wanda_outlier` does it:
 *   per block, the outlier ratio D = share of the Wanda scores |W|·sqrt(X) of all its
 *   linear layers (dense model) above M × their mean; the D's are min-max normalised,
 *   scaled to [0, 2λ] and shifted so their mean is the keep ratio 1 − s; a block's
 *   sparsity is 1 minus its value. More outliers, less pruning; the mean is exactly s
 *   and the spread (max − min) exactly 2λ.
 *
 * Any per-block score can be turned into sparsities the same way (spreadSparsity), which
 * is what a searched allocation uses; blocks of equal size then keep the overall
 * sparsity exactly s.
 */
import { InputError } from '../errors.ts';
import type { PrunableLayer } from './discover.ts';

export type Allocation = { kind: 'uniform' } | { kind: 'owl'; m: number; lambda: number };

/** OWL's LLaMA defaults (its scripts: Hyper_m 5, Lamda 0.08). */
export const OWL_DEFAULT_M = 5;
export const OWL_DEFAULT_LAMBDA = 0.08;

/** `--allocation uniform|owl` with `--owl-m`, `--owl-lambda`; checked before any work. */
export function parseAllocation(kind: string, m = OWL_DEFAULT_M, lambda = OWL_DEFAULT_LAMBDA): Allocation {
  if (kind === 'uniform') return { kind: 'uniform' };
  if (kind !== 'owl') throw new InputError(`--allocation ${kind}: expected uniform or owl`);
  if (!(Number.isFinite(m) && m > 0)) throw new InputError(`--owl-m ${m}: must be a positive number`);
  if (!(Number.isFinite(lambda) && lambda >= 0 && lambda < 0.5)) throw new InputError(`--owl-lambda ${lambda}: must be a number in [0, 0.5)`);
  return { kind: 'owl', m, lambda };
}

export function allocationName(a: Allocation): string {
  return a.kind === 'uniform' ? 'uniform' : `owl(M=${a.m},λ=${a.lambda})`;
}

/** Share of `scores` (all layers of a block, taken together) strictly above m × their mean. */
export function outlierRatio(scores: Float32Array[], m: number): number {
  let sum = 0;
  let count = 0;
  for (const s of scores) {
    for (let i = 0; i < s.length; i++) sum += s[i]!;
    count += s.length;
  }
  if (count === 0) return 0;
  const thresh = (m * sum) / count;
  let above = 0;
  for (const s of scores) for (let i = 0; i < s.length; i++) if (s[i]! > thresh) above++;
  return above / count;
}

/**
 * Per-block sparsities from per-block scores (higher score = keep more): min-max
 * normalised, scaled to [0, 2λ], shifted to mean keep ratio 1 − s. Equal scores (or
 * λ = 0) give the uniform allocation. Throws when a block would leave [0, 1].
 */
export function spreadSparsity(scores: number[], sparsity: number, lambda: number): number[] {
  if (scores.length === 0) return [];
  if (scores.some((d) => !Number.isFinite(d))) throw new InputError('layer-wise allocation: a block score is not finite');
  const lo = Math.min(...scores);
  const hi = Math.max(...scores);
  if (hi === lo || lambda === 0) return scores.map(() => sparsity);
  const keep = scores.map((d) => ((d - lo) / (hi - lo)) * 2 * lambda);
  const mean = keep.reduce((a, b) => a + b, 0) / keep.length;
  const out = keep.map((k) => 1 - (k - mean + (1 - sparsity)));
  const bad = out.findIndex((v) => !(v >= 0 && v < 1));
  if (bad >= 0) throw new InputError(`layer-wise allocation: block ${bad} would get sparsity ${out[bad]!.toFixed(4)}; lower --owl-lambda or the sparsity`);
  return out;
}

/** OWL's sparsity per block from per-block outlier ratios. */
export function owlSparsities(ratios: number[], sparsity: number, lambda: number): number[] {
  return spreadSparsity(ratios, sparsity, lambda);
}

/** Wanda's scores |W|·sqrt(X_j) of one layer, [out, in] (PyTorch layout). */
export function wandaScores(weight: Float32Array, rows: number, cols: number, X: Float32Array): Float32Array {
  const s = new Float32Array(rows * cols);
  const sx = new Float32Array(cols);
  for (let j = 0; j < cols; j++) sx[j] = Math.sqrt(X[j]!);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let j = 0; j < cols; j++) s[o + j] = Math.abs(weight[o + j]!) * sx[j]!;
  }
  return s;
}

/** Decoder block indices of `layers`, ascending (layers outside blocks, -1, excluded). */
export function blockIndices(layers: PrunableLayer[]): number[] {
  return [...new Set(layers.map((l) => l.block).filter((b) => b >= 0))].sort((a, b) => a - b);
}

/**
 * OWL's sparsity of each decoder block, from the dense weights and dense X of every
 * layer. Layers outside blocks keep the overall sparsity (not in the map).
 */
export function owlAllocation(
  layers: PrunableLayer[],
  weightOf: (l: PrunableLayer) => Float32Array,
  XOf: (l: PrunableLayer) => Float32Array,
  opts: { sparsity: number; m: number; lambda: number },
): { blocks: number[]; ratios: number[]; sparsity: Map<number, number> } {
  const blocks = blockIndices(layers);
  const ratios = blocks.map((b) => {
    const scores = layers.filter((l) => l.block === b).map((l) => wandaScores(weightOf(l), l.out, l.in, XOf(l)));
    return outlierRatio(scores, opts.m);
  });
  const s = owlSparsities(ratios, opts.sparsity, opts.lambda);
  return { blocks, ratios, sparsity: new Map(blocks.map((b, i) => [b, s[i]!])) };
}
