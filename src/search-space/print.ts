/**
 * Printers: infix (`mul(abs(mul(W,W)),mms(G))`, the form symprune stores and hashes),
 * Pruner-Zero's JSON tree (so exported metrics load in its code) and LaTeX for papers.
 */
import { isTerminal, signOf, type Tree } from './tree.ts';

/** Function-call infix without spaces; parseMetric reads it back to the same tree. */
export function toInfix(t: Tree): string {
  if (t.args.length === 0) return t.op;
  return `${t.op}(${t.args.map(toInfix).join(',')})`;
}

/** A node of Pruner-Zero's tree format; unary operators keep their operand in `left`. */
export interface PrunerZeroNode {
  data: string;
  left?: PrunerZeroNode;
  right?: PrunerZeroNode;
}

/**
 * Pruner-Zero's JSON tree (lib/gptree.py `_serialize_tree`). `JSON.stringify(x, null, 4)`
 * reproduces the layout of its published best_tree.json.
 */
export function toPrunerZeroJson(t: Tree): PrunerZeroNode {
  const out: PrunerZeroNode = { data: t.op };
  if (t.args[0]) out.left = toPrunerZeroJson(t.args[0]);
  if (t.args[1]) out.right = toPrunerZeroJson(t.args[1]);
  return out;
}

/** symprune's own JSON tree: the Tree object itself (`{"op", "args"}`), stable key order. */
export function toTreeJson(t: Tree): { op: string; args: unknown[] } {
  return { op: t.op, args: t.args.map(toTreeJson) };
}

// LaTeX precedence: higher binds tighter.
const PREC_ADD = 1;
const PREC_NEG = 1.5; // -a: bare as a left summand, bracketed elsewhere
const PREC_MUL = 2;
const PREC_UNARY = 3;
const PREC_ATOM = 4;

/**
 * LaTeX for a metric. Protected operators are shown in their usual notation (log and sqrt
 * act on |x|, log adds 0.001, exp clamps at 100: see DESIGN.md), `div` as a division by the
 * Frobenius norm, `mms`/`zsn` as named operators.
 */
export function toLatex(t: Tree): string {
  return latex(t).s;
}

function latex(t: Tree): { s: string; p: number } {
  if (isTerminal(t.op)) return { s: t.op, p: PREC_ATOM };
  const a = t.args[0]!;
  const b = t.args[1];
  const wrap = (x: { s: string; p: number }, min: number) =>
    x.p >= min ? x.s : `\\left(${x.s}\\right)`;
  const absOf = (x: Tree) => (signOf(x) === 'nonneg' ? latex(x).s : `\\left|${latex(x).s}\\right|`);
  switch (t.op) {
    case 'sqr':
    case 'pow':
      return { s: `${wrap(latex(a), PREC_ATOM)}^{2}`, p: PREC_UNARY };
    case 'neg':
      return { s: `-${wrap(latex(a), PREC_MUL)}`, p: PREC_NEG };
    case 'abs':
      return { s: `\\left|${latex(a).s}\\right|`, p: PREC_ATOM };
    case 'log':
      return { s: `\\log\\left(${absOf(a)} + 10^{-3}\\right)`, p: PREC_ATOM };
    case 'exp':
      return { s: `e^{${latex(a).s}}`, p: PREC_UNARY };
    case 'sqrt':
      return { s: `\\sqrt{${absOf(a)}}`, p: PREC_ATOM };
    case 'tanh':
      return { s: `\\tanh\\left(${latex(a).s}\\right)`, p: PREC_ATOM };
    case 'skp':
      return latex(a);
    case 'mms':
      return { s: `\\operatorname{mms}\\left(${latex(a).s}\\right)`, p: PREC_ATOM };
    case 'zsn':
      return { s: `\\operatorname{zsn}\\left(${latex(a).s}\\right)`, p: PREC_ATOM };
    case 'add':
      return { s: `${wrap(latex(a), PREC_ADD)} + ${wrap(latex(b!), PREC_MUL)}`, p: PREC_ADD };
    case 'sub':
      return { s: `${wrap(latex(a), PREC_ADD)} - ${wrap(latex(b!), PREC_MUL)}`, p: PREC_ADD };
    case 'mul':
      return { s: `${wrap(latex(a), PREC_MUL)} \\cdot ${wrap(latex(b!), PREC_UNARY)}`, p: PREC_MUL };
    case 'div':
      return { s: `\\frac{${latex(a).s}}{\\lVert ${latex(b!).s} \\rVert_F}`, p: PREC_ATOM };
    default:
      throw new Error(`unknown operator ${t.op}`);
  }
}
