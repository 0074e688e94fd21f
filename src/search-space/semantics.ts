/**
 * The exact numerical meaning of every operator, in one place.
 *
 * Precision: float32, as a PyTorch float32 tensor program. Every elementwise result is
 * rounded to float32 (Math.fround) before the next operator sees it; each value is computed
 * in float64 from float32 inputs first, which for + - * / and sqrt gives the correctly
 * rounded float32 result. Whole-tensor statistics (min/max, mean, std, Frobenius norm)
 * accumulate in float64, sequentially in row-major order, and are taken over the FINITE
 * elements only, so a stray inf or NaN stays where it is instead of turning the whole
 * tensor into NaN (as torch would):
 *
 *   mms(x) = (x - min) / (max - min); if max == min, or no element is finite: 0 for finite x.
 *   zsn(x) = (x - mean) / std, std unbiased (n - 1); if std == 0 or fewer than 2 finite
 *            elements: 0 for finite x.
 *   (Implemented branch-free: a degenerate range or std is replaced by 1, which gives exactly
 *   0 because then every finite element equals min, or the mean, exactly.)
 *   div(x, y) = x / c, c = fround(‖y‖_F) with y broadcast to the result's shape first (as
 *            Pruner-Zero's torch.broadcast_tensors does); if c is 0 or not finite, c = 1.
 *            So div is always a positive rescale of x.
 *   Non-finite elements pass through mms and zsn unchanged (±inf stays ±inf, NaN stays NaN).
 *
 * The reference interpreter uses the functions below directly; the compiler emits the same
 * expressions as source text (compile.ts) and calls the same finalisers, so kernel and
 * interpreter agree bit for bit.
 */
import type { UnaryOp } from './tree.ts';

export type ElementwiseUnary = Exclude<UnaryOp, 'mms' | 'zsn'>;

const f = Math.fround;

/** Elementwise unary operators on one float32 value. */
export const UNARY_FN: Record<ElementwiseUnary, (v: number) => number> = {
  sqr: (v) => f(v * v),
  pow: (v) => f(v * v),
  neg: (v) => -v,
  abs: (v) => Math.abs(v),
  log: (v) => f(Math.log(f(Math.abs(v) + 0.001))),
  exp: (v) => f(Math.exp(Math.min(v, 100))),
  sqrt: (v) => f(Math.sqrt(Math.abs(v))),
  tanh: (v) => f(Math.tanh(v)),
  skp: (v) => v,
};

/** Elementwise binary operators on float32 values. */
export const BINARY_FN: Record<'add' | 'sub' | 'mul', (a: number, b: number) => number> = {
  add: (a, b) => f(a + b),
  sub: (a, b) => f(a - b),
  mul: (a, b) => f(a * b),
};

/** Statistics of mms: the finite minimum and the range (1 when degenerate, see above). */
export function finishMms(min: number, max: number): { mn: number; rg: number } {
  if (min === Infinity) return { mn: 0, rg: 1 };
  const rg = max - min;
  return { mn: min, rg: rg > 0 ? rg : 1 };
}

export function mmsElement(v: number, mn: number, rg: number): number {
  return f((v - mn) / rg);
}

export function finishMean(sum: number, n: number): number {
  return n > 0 ? sum / n : 0;
}

/** Unbiased std over the finite elements; 1 when it is 0 or undefined (see above). */
export function finishStd(sumSqDev: number, n: number): number {
  const sd = n > 1 ? Math.sqrt(sumSqDev / (n - 1)) : 0;
  return sd > 0 ? sd : 1;
}

export function zsnElement(v: number, mu: number, sd: number): number {
  return f((v - mu) / sd);
}

/**
 * The divisor of div from the sum of squares of y's finite elements; `broadcast` is how many
 * times y repeats in the broadcast result (rows, when y is a row vector and x is not).
 */
export function finishNorm(sumSq: number, broadcast: number): number {
  const c = f(Math.sqrt(sumSq * broadcast));
  return c > 0 && c < Infinity ? c : 1;
}

export function divElement(v: number, c: number): number {
  return f(v / c);
}

/** Source-text twins of UNARY_FN/BINARY_FN for the code generator (argument names inlined). */
export const UNARY_SRC: Record<ElementwiseUnary, (v: string) => string> = {
  sqr: (v) => `fr(${v} * ${v})`,
  pow: (v) => `fr(${v} * ${v})`,
  neg: (v) => `(-(${v}))`,
  abs: (v) => `Math.abs(${v})`,
  log: (v) => `fr(Math.log(fr(Math.abs(${v}) + 0.001)))`,
  exp: (v) => `fr(Math.exp(Math.min(${v}, 100)))`,
  sqrt: (v) => `fr(Math.sqrt(Math.abs(${v})))`,
  tanh: (v) => `fr(Math.tanh(${v}))`,
  skp: (v) => v,
};

export const BINARY_SRC: Record<'add' | 'sub' | 'mul', (a: string, b: string) => string> = {
  add: (a, b) => `fr(${a} + ${b})`,
  sub: (a, b) => `fr(${a} - ${b})`,
  mul: (a, b) => `fr(${a} * ${b})`,
};

/** Transcendental operators cost far more per element than arithmetic. */
export const EXPENSIVE: ReadonlySet<string> = new Set(['log', 'exp', 'tanh']);
