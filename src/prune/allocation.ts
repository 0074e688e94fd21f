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
 * - expr: an expression over per-block statistics (R, A, M, D: src/search-space/
 *   allocation-expr.ts) gives each block a score v; a block's sparsity is
 *   s − 2λ·c·(v_b − v̄), v̄ the parameter-weighted mean score and c = min(1, 1/(max v − min v)).
 *   So the parameter-weighted mean sparsity (the overall sparsity) is exactly s, the
 *   sparsities span at most 2λ (exactly 2λ when the scores span 1 or more), and OWL is the
 *   expression mms(R). Constant, NaN or infinite scores give the uniform allocation.
 *
 * Blocks of equal size (LLaMA's) make the parameter-weighted mean the plain mean, which is
 * what OWL's code uses.
 */
import { InputError } from '../errors.ts';
import type { PrunableLayer } from './discover.ts';
import { ALLOCATION_TERMINALS, blockScores, isTerminal, parseAllocationExpr, toInfix, type BlockStatistics, type Tree } from '../search-space/index.ts';

export type Allocation =
  | { kind: 'uniform' }
  | { kind: 'owl'; m: number; lambda: number }
  /** `expr`: infix over the per-block terminals; `m` is R's outlier threshold. */
  | { kind: 'expr'; expr: string; m: number; lambda: number };

/** OWL's LLaMA defaults (its scripts: Hyper_m 5, Lamda 0.08). */
export const OWL_DEFAULT_M = 5;
export const OWL_DEFAULT_LAMBDA = 0.08;

/**
 * `--allocation uniform|owl|EXPR` with `--owl-m`, `--owl-lambda`; checked before any work.
 * EXPR is an expression over the per-block terminals R, A, M, D (infix or JSON tree).
 */
export function parseAllocation(kind: string, m = OWL_DEFAULT_M, lambda = OWL_DEFAULT_LAMBDA, label = `--allocation ${kind}`): Allocation {
  if (kind === 'uniform') return { kind: 'uniform' };
  if (!(Number.isFinite(m) && m > 0)) throw new InputError(`--owl-m ${m}: must be a positive number`);
  if (!(Number.isFinite(lambda) && lambda >= 0 && lambda < 0.5)) throw new InputError(`--owl-lambda ${lambda}: must be a number in [0, 0.5)`);
  if (kind === 'owl') return { kind: 'owl', m, lambda };
  if (/^[A-Za-z_][\w-]*$/.test(kind.trim()) && !isTerminal(kind.trim().toUpperCase()))
    throw new InputError(`${label}: expected uniform, owl, or an expression over ${ALLOCATION_TERMINALS.join(', ')} (e.g. mms(R))`);
  return { kind: 'expr', expr: toInfix(parseAllocationExpr(kind, label)), m, lambda };
}

/**
 * An allocation from a file's text: what `symprune export` writes for an allocation search
 * (JSON with `"kind": "allocation"`, its infix, λ and M), or any text parseAllocation reads.
 * The file's λ and M are used unless `given` (flags set on the command line) overrides them.
 */
export function allocationFromText(text: string, label: string, given: { m?: number; lambda?: number } = {}): Allocation {
  const t = text.trim();
  let o: Record<string, unknown> | null = null;
  if (t.startsWith('{')) {
    try {
      o = JSON.parse(t) as Record<string, unknown>;
    } catch (e) {
      throw new InputError(`${label}: bad JSON: ${(e as Error).message}`);
    }
  }
  if (o && o.kind === 'allocation') {
    const num = (k: 'm' | 'lambda'): number | undefined => (typeof o![k] === 'number' ? (o![k] as number) : undefined);
    const expr = typeof o.infix === 'string' ? o.infix : JSON.stringify(o.tree ?? null);
    const a = parseAllocation(expr, given.m ?? num('m'), given.lambda ?? num('lambda'), label);
    if (a.kind !== 'expr') throw new InputError(`${label}: "infix" must be an expression over ${ALLOCATION_TERMINALS.join(', ')}`);
    return a;
  }
  return parseAllocation(t, given.m, given.lambda, label);
}

/** A stored allocation (a run's settings) checked as if it came from the flags. */
export function checkAllocation(a: Allocation): void {
  if (a.kind === 'uniform') return;
  const again = parseAllocation(a.kind === 'owl' ? 'owl' : a.expr, a.m, a.lambda);
  if (again.kind !== a.kind) throw new InputError(`allocation ${a.kind}: malformed`);
}

export function allocationName(a: Allocation): string {
  if (a.kind === 'uniform') return 'uniform';
  if (a.kind === 'owl') return `owl(M=${a.m},λ=${a.lambda})`;
  return `expr(${a.expr},M=${a.m},λ=${a.lambda})`;
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
 * Per-block sparsities from per-block scores (higher score = keep more), OWL's way: min-max
 * normalised, spread over 2λ, mean sparsity s (weighted by `params` when given). Equal
 * scores (or λ = 0) give the uniform allocation. Throws when a score is not finite or a
 * block would leave [0, 1).
 */
export function spreadSparsity(scores: number[], sparsity: number, lambda: number, params?: number[]): number[] {
  if (scores.length === 0) return [];
  if (scores.some((d) => !Number.isFinite(d))) throw new InputError('layer-wise allocation: a block score is not finite');
  const lo = Math.min(...scores);
  const hi = Math.max(...scores);
  const norm = scores.map((d) => (hi > lo ? (d - lo) / (hi - lo) : 0));
  return offsetSparsity(norm, params ?? scores.map(() => 1), sparsity, lambda).sparsity;
}

/**
 * The expression allocation's rule (see the top of this file): sparsity_b = s − 2λ·c·(v_b − v̄),
 * v̄ weighted by `params`, c = min(1, 1/span). `fallback` says why the allocation is uniform
 * when the scores cannot order the blocks (constant, NaN or infinite). Throws an InputError
 * when a block would leave [0, 1).
 */
export function offsetSparsity(scores: ArrayLike<number>, params: number[], sparsity: number, lambda: number): { sparsity: number[]; fallback: string | null } {
  const v = Array.from(scores);
  const uniform = (why: string | null) => ({ sparsity: v.map(() => sparsity), fallback: why });
  if (v.length === 0) return uniform(null);
  if (v.some((x) => !Number.isFinite(x))) return uniform('a block score is NaN or infinite');
  const lo = Math.min(...v);
  const hi = Math.max(...v);
  if (!(hi > lo)) return uniform('every block has the same score');
  if (lambda === 0) return uniform(null);
  const total = params.reduce((a, b) => a + b, 0);
  const mean = v.reduce((a, x, i) => a + x * params[i]!, 0) / total;
  const k = 2 * lambda * Math.min(1, 1 / (hi - lo));
  const out = v.map((x) => sparsity - k * (x - mean));
  const bad = out.findIndex((x) => !(x >= 0 && x < 1));
  if (bad >= 0) throw new InputError(`layer-wise allocation: block ${bad} would get sparsity ${out[bad]!.toFixed(4)}; lower --owl-lambda or the sparsity`);
  return { sparsity: out, fallback: null };
}

/** OWL's sparsity per block from per-block outlier ratios. */
export function owlSparsities(ratios: number[], sparsity: number, lambda: number, params?: number[]): number[] {
  return spreadSparsity(ratios, sparsity, lambda, params);
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

/** Prunable weights per block, in `blocks` order. */
export function blockParams(layers: PrunableLayer[], blocks: number[]): number[] {
  return blocks.map((b) => layers.filter((l) => l.block === b).reduce((a, l) => a + l.out * l.in, 0));
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
  const s = owlSparsities(ratios, opts.sparsity, opts.lambda, blockParams(layers, blocks));
  return { blocks, ratios, sparsity: new Map(blocks.map((b, i) => [b, s[i]!])) };
}

/**
 * The per-block terminals of allocation expressions, from the dense weights and dense X:
 * R (OWL's outlier ratio with threshold m), A (mean |W|), M (mean X over the input
 * channels of the block's layers), D (depth in [0, 1]).
 */
export function blockStatistics(
  layers: PrunableLayer[],
  weightOf: (l: PrunableLayer) => Float32Array,
  XOf: (l: PrunableLayer) => Float32Array,
  m: number,
): { blocks: number[]; params: number[]; stats: BlockStatistics } {
  const blocks = blockIndices(layers);
  const stats: BlockStatistics = { R: new Float32Array(blocks.length), A: new Float32Array(blocks.length), M: new Float32Array(blocks.length), D: new Float32Array(blocks.length) };
  blocks.forEach((b, i) => {
    const ls = layers.filter((l) => l.block === b);
    const scores: Float32Array[] = [];
    let absSum = 0;
    let count = 0;
    let xSum = 0;
    let xCount = 0;
    for (const l of ls) {
      const w = weightOf(l);
      const X = XOf(l);
      scores.push(wandaScores(w, l.out, l.in, X));
      for (let k = 0; k < w.length; k++) absSum += Math.abs(w[k]!);
      count += w.length;
      for (let j = 0; j < X.length; j++) xSum += X[j]!;
      xCount += X.length;
    }
    stats.R[i] = outlierRatio(scores, m);
    stats.A[i] = count ? absSum / count : 0;
    stats.M[i] = xCount ? xSum / xCount : 0;
    stats.D[i] = blocks.length > 1 ? i / (blocks.length - 1) : 0;
  });
  return { blocks, params: blockParams(layers, blocks), stats };
}

/** Each block's score and sparsity under an expression, from statistics computed once. */
export function allocateByExpression(
  tree: Tree,
  b: { blocks: number[]; params: number[]; stats: BlockStatistics },
  opts: { sparsity: number; lambda: number },
): { scores: Float32Array; sparsity: Map<number, number>; fallback: string | null } {
  const scores = blockScores(tree, b.stats);
  const r = offsetSparsity(scores, b.params, opts.sparsity, opts.lambda);
  return { scores, sparsity: new Map(b.blocks.map((blk, i) => [blk, r.sparsity[i]!])), fallback: r.fallback };
}

/** What an allocation did, per block, for prune.json. */
export interface AllocationReport {
  name: string;
  blocks: Array<{ block: number; sparsity: number; outlierRatio?: number; score?: number; meanAbsW?: number; meanX?: number; depth?: number }>;
  /** Why an expression's allocation fell back to uniform. */
  fallback?: string;
}

/**
 * The sparsity of each decoder block under a non-uniform allocation, from the dense
 * weights and dense X, with its report.
 */
export function layerAllocation(
  a: Exclude<Allocation, { kind: 'uniform' }>,
  layers: PrunableLayer[],
  weightOf: (l: PrunableLayer) => Float32Array,
  XOf: (l: PrunableLayer) => Float32Array,
  sparsity: number,
): { sparsity: Map<number, number>; report: AllocationReport } {
  if (a.kind === 'owl') {
    const r = owlAllocation(layers, weightOf, XOf, { sparsity, m: a.m, lambda: a.lambda });
    return { sparsity: r.sparsity, report: { name: allocationName(a), blocks: r.blocks.map((b, i) => ({ block: b, sparsity: r.sparsity.get(b)!, outlierRatio: r.ratios[i]! })) } };
  }
  const b = blockStatistics(layers, weightOf, XOf, a.m);
  const r = allocateByExpression(parseAllocationExpr(a.expr), b, { sparsity, lambda: a.lambda });
  const blocks = b.blocks.map((blk, i) => ({ block: blk, sparsity: r.sparsity.get(blk)!, score: r.scores[i]!, outlierRatio: b.stats.R[i]!, meanAbsW: b.stats.A[i]!, meanX: b.stats.M[i]!, depth: b.stats.D[i]! }));
  return { sparsity: r.sparsity, report: { name: allocationName(a), blocks, ...(r.fallback ? { fallback: r.fallback } : {}) } };
}

/** Per-layer sparsities (a job's layerSparsity) from per-block ones; layers outside blocks keep s. */
export function layerSparsities(layers: { block: number }[], blockSparsity: Map<number, number>, sparsity: number): number[] {
  return layers.map((l) => blockSparsity.get(l.block) ?? sparsity);
}
