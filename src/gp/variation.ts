/**
 * Variation operators on trees: subtree crossover, point mutation and subtree mutation.
 * Nodes are chosen uniformly over all nodes of a tree.
 */
import { isBinary, isTerminal, isUnary, node, nodesWithPaths, replaceAt, type Tree } from '../search-space/index.ts';
import { randomTree, type PrimitiveSet } from './primitives.ts';
import type { Rng } from './rng.ts';

/** `a` with a random subtree replaced by a random subtree of `b`. */
export function crossover(rng: Rng, a: Tree, b: Tree): Tree {
  const at = rng.pick(nodesWithPaths(a));
  const from = rng.pick(nodesWithPaths(b));
  return replaceAt(a, at.path, from.node);
}

/**
 * One node replaced by another primitive of the same arity (a terminal by another
 * terminal); null when the chosen node has no alternative in the primitive set.
 */
export function pointMutation(rng: Rng, t: Tree, prims: PrimitiveSet): Tree | null {
  const at = rng.pick(nodesWithPaths(t));
  const n = at.node;
  let choices: readonly string[];
  if (isTerminal(n.op)) choices = prims.terminals;
  else if (isUnary(n.op)) choices = prims.unary;
  else if (isBinary(n.op)) choices = prims.binary;
  else return null;
  const others = choices.filter((c) => c !== n.op);
  if (others.length === 0) return null;
  const op = rng.pick(others) as Tree['op'];
  return replaceAt(t, at.path, node(op, ...n.args));
}

/** A random subtree replaced by a fresh 'grow' tree of depth at most `maxDepth`. */
export function subtreeMutation(rng: Rng, t: Tree, prims: PrimitiveSet, maxDepth: number): Tree {
  const at = rng.pick(nodesWithPaths(t));
  return replaceAt(t, at.path, randomTree(rng, prims, maxDepth, 'grow', { rootMayBeTerminal: true }));
}
