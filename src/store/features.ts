/**
 * The shape features of a tree that the store keeps as columns (size, depth, count of
 * each terminal and operator), so that correlations with perplexity are plain SQL.
 */
import { isAllocationTerminal, type Tree } from '../search-space/tree.ts';
import { OPERATORS, TERMINALS, type Operator, type Terminal } from './schema.ts';
import type { TreeFeatures } from './store.ts';

export function treeFeatures(tree: Tree): TreeFeatures {
  const terminals = Object.fromEntries(TERMINALS.map((t) => [t, 0])) as Record<Terminal, number>;
  const ops: Partial<Record<Operator, number>> = {};
  let size = 0;
  const walk = (t: Tree, d: number): number => {
    size++;
    if ((TERMINALS as readonly string[]).includes(t.op)) terminals[t.op as Terminal]++;
    else if ((OPERATORS as readonly string[]).includes(t.op)) ops[t.op as Operator] = (ops[t.op as Operator] ?? 0) + 1;
    else if (!isAllocationTerminal(t.op)) throw new Error(`unknown node ${t.op}`); // an allocation's per-block terminals have no columns
    let deepest = d;
    for (const a of t.args) deepest = Math.max(deepest, walk(a, d + 1));
    return deepest;
  };
  const depth = walk(tree, 0);
  return { size, depth, terminals, ops };
}
