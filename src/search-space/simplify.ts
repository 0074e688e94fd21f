/**
 * Opposing-operation simplification (OOS): a bottom-up rewrite that removes operations that
 * cancel or do nothing, so the GP does not spend evaluations on disguised copies of metrics
 * it has already seen. docs/oos-rules.md lists every rule with its class:
 *
 * - exact: the value is unchanged wherever it occurs (bit for bit in float32, or exact in
 *   real arithmetic with at most last-bit float32 differences, as noted per rule);
 * - mask-preserving: the value changes by a strictly increasing map. Pruning compares scores
 *   within a row, so such a rule keeps the mask only where every operator between the root
 *   and the rewritten node is itself strictly increasing in that operand; simplify applies
 *   these rules only in that "monotone context" (the root, and below skp, exp, tanh, mms,
 *   zsn, the left operand of div, and abs/sqrt/log/sqr/pow of a non-negative operand).
 *
 * Exactness assumes finite intermediate values (see semantics.ts for non-finite handling).
 */
import { node, shapeOf, signOf, treeEquals, type Tree } from './tree.ts';

/**
 * Apply the OOS rules until none applies. The result scores every row in the same order;
 * with `exact`, no mask-preserving rule is used, so its value is the same (for expressions
 * whose value itself matters, such as a layer-wise allocation's block scores).
 */
export function simplify(t: Tree, opts: { exact?: boolean } = {}): Tree {
  let cur = t;
  for (let i = 0; i < 100; i++) {
    const next = pass(cur, !opts.exact);
    if (treeEquals(next, cur)) return next;
    cur = next;
  }
  return cur;
}

/** Operand-order-insensitive key: add/mul operands sorted, so mul(x, x) is found through it. */
export function commutativeKey(t: Tree): string {
  if (t.args.length === 0) return t.op;
  const parts = t.args.map(commutativeKey);
  if (t.op === 'add' || t.op === 'mul') parts.sort();
  return `${t.op}(${parts.join(',')})`;
}

/** Whether operand `i` of `t` stays in monotone context when `t` is in one. */
function childIsMonotone(t: Tree, i: number): boolean {
  switch (t.op) {
    case 'skp':
    case 'exp':
    case 'tanh':
    case 'mms':
    case 'zsn':
      return true;
    case 'div':
      return i === 0;
    case 'abs':
    case 'sqrt':
    case 'log':
    case 'sqr':
    case 'pow':
      return signOf(t.args[0]!) === 'nonneg';
    default:
      return false;
  }
}

function pass(t: Tree, monotone: boolean): Tree {
  if (t.args.length === 0) return t;
  const args = t.args.map((a, i) => pass(a, monotone && childIsMonotone(t, i)));
  let cur: Tree = args.every((a, i) => a === t.args[i]) ? t : node(t.op, ...args);
  for (let i = 0; i < 50; i++) {
    const next = rewrite(cur, monotone);
    if (next === null) break;
    cur = next;
  }
  return cur;
}

const isOp = (t: Tree, op: string) => t.op === op;

/** One rule at the root of `t` (whose operands are already simplified), or null. */
export function rewrite(t: Tree, monotone: boolean): Tree | null {
  const a = t.args[0];
  const b = t.args[1];
  switch (t.op) {
    case 'skp':
      return a!;
    case 'pow':
      return node('sqr', a!);
    case 'neg':
      if (isOp(a!, 'neg')) return a!.args[0]!;
      if (isOp(a!, 'sub')) return node('sub', a!.args[1]!, a!.args[0]!);
      return null;
    case 'abs':
      if (isOp(a!, 'abs')) return a!;
      if (isOp(a!, 'neg')) return node('abs', a!.args[0]!);
      if (signOf(a!) === 'nonneg') return a!;
      if (signOf(a!) === 'nonpos') return node('neg', a!);
      return null;
    case 'sqr':
      if (isOp(a!, 'neg') || isOp(a!, 'abs')) return node('sqr', a!.args[0]!);
      if (isOp(a!, 'sqrt')) return node('abs', a!.args[0]!);
      return null;
    case 'sqrt':
      if (isOp(a!, 'neg') || isOp(a!, 'abs')) return node('sqrt', a!.args[0]!);
      if (isOp(a!, 'sqr')) return node('abs', a!.args[0]!);
      return null;
    case 'log':
      if (isOp(a!, 'neg') || isOp(a!, 'abs')) return node('log', a!.args[0]!);
      if (monotone && isOp(a!, 'exp')) return a!.args[0]!;
      return null;
    case 'exp':
      if (monotone && isOp(a!, 'log')) return node('abs', a!.args[0]!);
      return null;
    case 'tanh':
      if (isOp(a!, 'neg')) return node('neg', node('tanh', a!.args[0]!));
      return null;
    case 'mms':
      if (isOp(a!, 'mms') || isOp(a!, 'zsn')) return node('mms', a!.args[0]!);
      // Not when div broadcasts a row-shaped x: the statistics would be taken over [in].
      if (isOp(a!, 'div') && shapeOf(a!.args[0]!) === shapeOf(a!)) return node('mms', a!.args[0]!);
      return null;
    case 'zsn':
      if (isOp(a!, 'zsn') || isOp(a!, 'mms')) return node('zsn', a!.args[0]!);
      if (isOp(a!, 'div') && shapeOf(a!.args[0]!) === shapeOf(a!)) return node('zsn', a!.args[0]!);
      if (isOp(a!, 'neg')) return node('neg', node('zsn', a!.args[0]!));
      return null;
    case 'add':
      if (isOp(a!, 'neg') && isOp(b!, 'neg')) return node('neg', node('add', a!.args[0]!, b!.args[0]!));
      if (isOp(b!, 'neg')) return node('sub', a!, b!.args[0]!);
      if (isOp(a!, 'neg')) return node('sub', b!, a!.args[0]!);
      return null;
    case 'sub':
      if (isOp(a!, 'neg') && isOp(b!, 'neg')) return node('sub', b!.args[0]!, a!.args[0]!);
      if (isOp(b!, 'neg')) return node('add', a!, b!.args[0]!);
      if (isOp(a!, 'neg')) return node('neg', node('add', a!.args[0]!, b!));
      return null;
    case 'mul':
      if (isOp(a!, 'neg') && isOp(b!, 'neg')) return node('mul', a!.args[0]!, b!.args[0]!);
      if (isOp(a!, 'neg')) return node('neg', node('mul', a!.args[0]!, b!));
      if (isOp(b!, 'neg')) return node('neg', node('mul', a!, b!.args[0]!));
      if (a === b || commutativeKey(a!) === commutativeKey(b!)) return node('sqr', a!);
      return null;
    case 'div':
      if (isOp(b!, 'neg') || isOp(b!, 'abs')) return node('div', a!, b!.args[0]!);
      if (isOp(a!, 'neg')) return node('neg', node('div', a!.args[0]!, b!));
      return null;
    default:
      return null;
  }
}

