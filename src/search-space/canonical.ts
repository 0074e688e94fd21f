/**
 * Canonical form: one representative per class of metrics that prune identically, so the GP
 * can recognise a metric it has already paid for. On top of OOS (simplify):
 *
 * 1. Root wrappers that cannot change a per-row ranking are stripped: skp, exp, tanh, mms,
 *    zsn and div(x, ·) (strictly increasing, or a positive rescale, of the whole score), and
 *    sqr/pow/sqrt/log at the root become abs (each is a strictly increasing function of |x|);
 *    abs of a non-negative score goes too. Mask-preserving in exact arithmetic; float32
 *    saturation (tanh -> 1 above ~9, exp clamped at 100 or overflowing above ~88.7) can merge
 *    distinct scores into ties, which the canonical form ignores.
 * 2. Chains of add and of mul are flattened and their operands sorted, then rebuilt
 *    left-deep (commutativity is exact in float32; re-association is exact in real
 *    arithmetic only).
 *
 * The hash is the SHA-1 of the canonical infix, stable across runs and machines.
 */
import { createHash } from 'node:crypto';
import { node, signOf, treeEquals, type Tree } from './tree.ts';
import { toInfix } from './print.ts';
import { simplify } from './simplify.ts';

export function canonicalize(t: Tree): Tree {
  return canonicalizeWith(t, simplify, stripRoot);
}

/** The canonical-form loop with the given simplification and root rule (allocation-expr.ts keeps the root). */
export function canonicalizeWith(t: Tree, simp: (t: Tree) => Tree, root: (t: Tree) => Tree): Tree {
  let cur = simp(t);
  for (let i = 0; i < 100; i++) {
    const next = simp(orderOperands(root(cur)));
    if (treeEquals(next, cur)) return next;
    cur = next;
  }
  return cur;
}

/** Hex SHA-1 of the canonical infix. */
export function canonicalHash(t: Tree): string {
  return createHash('sha1').update(toInfix(canonicalize(t))).digest('hex');
}

/** Remove score transforms at the root that keep every row's order. */
export function stripRoot(t: Tree): Tree {
  let cur = t;
  for (;;) {
    const a = cur.args[0];
    switch (cur.op) {
      case 'skp':
      case 'exp':
      case 'tanh':
      case 'mms':
      case 'zsn':
      case 'div':
        cur = a!;
        continue;
      case 'sqr':
      case 'pow':
      case 'sqrt':
      case 'log':
        cur = signOf(a!) === 'nonneg' ? a! : node('abs', a!);
        continue;
      case 'abs':
        if (signOf(a!) === 'nonneg') {
          cur = a!;
          continue;
        }
        if (a!.op === 'neg' || a!.op === 'abs') {
          cur = node('abs', a!.args[0]!);
          continue;
        }
        return cur;
      default:
        return cur;
    }
  }
}

/** Flatten add/mul chains, sort their operands by canonical infix, rebuild left-deep. */
export function orderOperands(t: Tree): Tree {
  if (t.args.length === 0) return t;
  if (t.op === 'add' || t.op === 'mul') {
    const operands: Tree[] = [];
    const collect = (n: Tree) => {
      if (n.op === t.op) n.args.forEach(collect);
      else operands.push(orderOperands(n));
    };
    collect(t);
    const keyed = operands.map((o) => ({ o, k: toInfix(o) }));
    keyed.sort((x, y) => (x.k < y.k ? -1 : x.k > y.k ? 1 : 0));
    let acc = keyed[0]!.o;
    for (let i = 1; i < keyed.length; i++) acc = node(t.op, acc, keyed[i]!.o);
    return acc;
  }
  return node(t.op, ...t.args.map(orderOperands));
}
