/**
 * Structural validity of a metric, before any data is seen. A metric must score every
 * weight separately: its value must have the layer's [out, in] shape, so it must read W or G
 * somewhere (a tree over X alone is a row vector, the same for every output row, and cannot
 * rank weights within a row).
 */
import { arity, isAllocationTerminal, isOp, shapeOf, terminalsOf, type Tree } from './tree.ts';

/** A reason the tree cannot be a metric, or null when it can. */
export function validateTree(t: Tree): string | null {
  const bad = findMalformed(t, 'root');
  if (bad) return bad;
  const perBlock = [...terminalsOf(t)].find(isAllocationTerminal);
  if (perBlock) return `uses ${perBlock}, a per-block statistic of a layer-wise allocation (--allocation EXPR), not a metric terminal`;
  if (shapeOf(t) !== 'full') return 'shape [in]: the metric reads only X, so every output row gets the same scores';
  return null;
}

export function findMalformed(t: Tree, where: string): string | null {
  if (t === null || typeof t !== 'object' || typeof t.op !== 'string' || !Array.isArray(t.args)) {
    return `malformed node at ${where}`;
  }
  if (!isOp(t.op)) return `unknown operator '${t.op}' at ${where}`;
  const want = arity(t.op);
  if (t.args.length !== want) return `'${t.op}' takes ${want} argument(s), got ${t.args.length} at ${where}`;
  for (let i = 0; i < t.args.length; i++) {
    const r = findMalformed(t.args[i]!, `${where}.${i}`);
    if (r) return r;
  }
  return null;
}
