/**
 * Layer-wise allocation expressions: the metric language's trees and operators over
 * per-block statistics instead of per-weight ones. Evaluated on a vector with one value per
 * decoder block (so mms, zsn and div take their statistics over the blocks), the value is
 * each block's score: higher keeps more of the block (src/prune/allocation.ts turns the
 * scores into sparsities).
 *
 * Unlike a metric, whose mask survives any increasing transform of its scores, an
 * allocation depends on the scores' values, so only OOS's exact rules apply and the
 * canonical form keeps the root.
 */
import { InputError } from '../errors.ts';
import { canonicalizeWith } from './canonical.ts';
import { evaluate } from './interpret.ts';
import { parseMetric } from './parse.ts';
import { simplify } from './simplify.ts';
import { ALLOCATION_TERMINALS, isAllocationTerminal, terminalsOf, type AllocationTerminal, type Tree } from './tree.ts';
import { findMalformed } from './validate.ts';

/** What each per-block terminal holds (help texts and the README say the same). */
export const ALLOCATION_TERMINAL_DOCS: Record<AllocationTerminal, string> = {
  R: "OWL's outlier ratio: share of the block's Wanda scores |W|·sqrt(X) above --owl-m times their mean",
  A: "mean |W| over the block's prunable weights",
  M: "mean X (input activation norm) over the input channels of the block's layers",
  D: 'depth: block index / (blocks - 1), 0 for the first block and 1 for the last',
};

/** Per-block statistics, one value per block, in block order. */
export type BlockStatistics = Record<AllocationTerminal, Float32Array>;

/** A reason the tree cannot be an allocation expression, or null when it can. */
export function validateAllocationTree(t: Tree): string | null {
  const bad = findMalformed(t, 'root');
  if (bad) return bad;
  const other = [...terminalsOf(t)].find((x) => !isAllocationTerminal(x));
  if (other) return `uses ${other}, a per-weight metric terminal; an allocation reads the per-block ${ALLOCATION_TERMINALS.join(', ')}`;
  return null;
}

/** An allocation expression from infix or JSON text; InputError naming `label` when it is not one. */
export function parseAllocationExpr(text: string, label = 'allocation'): Tree {
  let t: Tree;
  try {
    t = parseMetric(text);
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`${label}: ${e.message.replace(/^metric: /, '')}`);
    throw e;
  }
  const why = validateAllocationTree(t);
  if (why) throw new InputError(`${label}: ${why}`);
  return t;
}

/** OOS with the exact rules only: the same block scores. */
export function simplifyAllocation(t: Tree): Tree {
  return simplify(t, { exact: true });
}

/** One representative per class of expressions with the same value (exact OOS, sorted operands). */
export function canonicalizeAllocation(t: Tree): Tree {
  return canonicalizeWith(t, simplifyAllocation, (x) => x);
}

/** Each block's score under the expression (float32, the operators' exact semantics). */
export function blockScores(t: Tree, stats: BlockStatistics): Float32Array {
  const why = validateAllocationTree(t);
  if (why) throw new InputError(`allocation ${why}`);
  const n = stats.R.length;
  for (const k of ALLOCATION_TERMINALS) if (stats[k].length !== n) throw new Error(`block statistics: ${k} has ${stats[k].length} values, R has ${n}`);
  const empty = new Float32Array(n);
  const v = evaluate(t, { rows: 1, cols: n, W: empty, G: null, X: empty, blocks: stats });
  return Float32Array.from(v.data);
}

/**
 * Allocations from the literature as expressions. OWL's rule (outlier ratios min-max
 * normalised, spread over 2λ) is mms(R): its scores span exactly 1.
 */
export const KNOWN_ALLOCATIONS = Object.freeze({
  owl: Object.freeze({ name: 'owl', infix: 'mms(R)', tree: parseMetric('mms(R)'), description: "OWL's layer-wise sparsity (Yin et al. 2024)" }),
});
