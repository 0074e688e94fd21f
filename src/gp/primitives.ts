/**
 * The primitive set a search may use, and random trees over it (Koza's grow and full
 * methods, combined as ramped half-and-half by the engine).
 */
import { BINARY_OPS, TERMINALS, UNARY_OPS, node, opsOf, terminalsOf, type BinaryOp, type Terminal, type Tree, type UnaryOp } from '../search-space/index.ts';
import type { Rng } from './rng.ts';

export interface PrimitiveSet {
  terminals: readonly Terminal[];
  unary: readonly UnaryOp[];
  binary: readonly BinaryOp[];
}

export const ALL_PRIMITIVES: PrimitiveSet = { terminals: TERMINALS, unary: UNARY_OPS, binary: BINARY_OPS };

/**
 * A random tree of depth at most `maxDepth`. 'full': operators on every level above
 * maxDepth; 'grow': the root is an operator (unless `rootMayBeTerminal`), lower levels pick
 * a terminal with probability 1/2 (as Pruner-Zero's random_tree). Operators are drawn
 * uniformly from unary ∪ binary.
 */
export function randomTree(
  rng: Rng,
  prims: PrimitiveSet,
  maxDepth: number,
  method: 'grow' | 'full',
  opts: { rootMayBeTerminal?: boolean } = {},
): Tree {
  const nOps = prims.unary.length + prims.binary.length;
  const gen = (depth: number): Tree => {
    const forced = depth === 0 && !opts.rootMayBeTerminal;
    const wantOp = depth < maxDepth && nOps > 0 && (method === 'full' || forced || rng.next() >= 0.5);
    if (!wantOp) return node(rng.pick(prims.terminals));
    const k = rng.int(nOps);
    if (k < prims.unary.length) return node(prims.unary[k]!, gen(depth + 1));
    const op = prims.binary[k - prims.unary.length]!;
    const a = gen(depth + 1);
    const b = gen(depth + 1);
    return node(op, a, b);
  };
  return gen(0);
}

/** Why the tree uses something outside the primitive set, or null. */
export function outsidePrimitives(t: Tree, prims: PrimitiveSet): string | null {
  for (const term of terminalsOf(t)) {
    if (!prims.terminals.includes(term)) return `uses terminal ${term}, which this search does not enable`;
  }
  for (const op of opsOf(t)) {
    if (!(prims.unary as readonly string[]).includes(op) && !(prims.binary as readonly string[]).includes(op)) {
      return `uses operator ${op}, which this search does not enable`;
    }
  }
  return null;
}
