/**
 * Gradient rules for elementwise ops (with numpy broadcasting): arithmetic, unary math,
 * activations, Where, Cast. Broadcast inputs get their gradient summed back to shape.
 */
import type { NodeProto } from '../proto.ts';
import { getAttr } from '../graph-build.ts';
import { FLOAT_TYPES } from './shape-probe.ts';
import type { GradContext, GradRule } from './context.ts';

const ins = (n: NodeProto): string[] => n.input ?? [];
const out0 = (n: NodeProto): string => n.output![0]!;

/** Reduce a full-output-shaped contribution to input i's shape. */
function toInput(ctx: GradContext, n: NodeProto, i: number, contrib: string): string {
  return ctx.reduceTo(contrib, ctx.dims(out0(n)), ctx.dims(ins(n)[i]!));
}

/** Unary rule from a function of (ctx, x, y, g) giving dx. */
function unary(f: (ctx: GradContext, x: string, y: string, g: string, dt: number) => string): GradRule {
  return (ctx, n, gy, need) => {
    const g = gy[0];
    if (!g || !need[0]) return [null];
    return [f(ctx, ins(n)[0]!, out0(n), g, ctx.dtype(out0(n)))];
  };
}

const add: GradRule = (ctx, n, gy, need) => {
  const g = gy[0]!;
  return ins(n).map((_, i) => (need[i] ? toInput(ctx, n, i, g) : null));
};

const sub: GradRule = (ctx, n, gy, need) => {
  const g = gy[0]!;
  return [
    need[0] ? toInput(ctx, n, 0, g) : null,
    need[1] ? ctx.emit('Neg', [toInput(ctx, n, 1, g)]) : null,
  ];
};

const mul: GradRule = (ctx, n, gy, need) => {
  const g = gy[0]!;
  const [a, b] = ins(n) as [string, string];
  if (a === b && need[0]) {
    // x*x: both slots are the same tensor; emit one 2*g*x and give it to slot 0 only.
    const two = ctx.scalar(2, ctx.dtype(a));
    return [toInput(ctx, n, 0, ctx.emit('Mul', [ctx.emit('Mul', [g, a]), two])), null];
  }
  return [
    need[0] ? toInput(ctx, n, 0, ctx.emit('Mul', [g, b])) : null,
    need[1] ? toInput(ctx, n, 1, ctx.emit('Mul', [g, a])) : null,
  ];
};

const div: GradRule = (ctx, n, gy, need) => {
  const g = gy[0]!;
  const [, b] = ins(n) as [string, string];
  const t = ctx.emit('Div', [g, b]);
  return [
    need[0] ? toInput(ctx, n, 0, t) : null,
    need[1] ? ctx.emit('Neg', [toInput(ctx, n, 1, ctx.emit('Mul', [t, out0(n)]))]) : null,
  ];
};

const pow: GradRule = (ctx, n, gy, need) => {
  const g = gy[0]!;
  const [a, b] = ins(n) as [string, string];
  const dt = ctx.dtype(a);
  let ga: string | null = null;
  if (need[0]) {
    const bv = ctx.staticValues(b);
    let d: string | null;
    if (bv && bv.length === 1 && bv[0] === 2) d = ctx.emit('Mul', [a, ctx.scalar(2, dt)]);
    else if (bv && bv.length === 1 && bv[0] === 1) d = null;
    else if (bv && bv.length === 1) d = ctx.emit('Mul', [ctx.emit('Pow', [a, ctx.scalar(bv[0]! - 1, ctx.dtype(b))]), ctx.scalar(bv[0]!, dt)]);
    else {
      const bm1 = ctx.emit('Sub', [b, ctx.scalar(1, ctx.dtype(b))]);
      let bb = b;
      if (ctx.dtype(b) !== dt) bb = ctx.emit('Cast', [b], { to: dt });
      d = ctx.emit('Mul', [ctx.emit('Pow', [a, bm1]), bb]);
    }
    ga = toInput(ctx, n, 0, d ? ctx.emit('Mul', [g, d]) : g);
  }
  let gb: string | null = null;
  if (need[1]) gb = toInput(ctx, n, 1, ctx.emit('Mul', [ctx.emit('Mul', [g, out0(n)]), ctx.emit('Log', [a])]));
  return [ga, gb];
};

/** Max/Min: the gradient goes to the input(s) equal to the result (ties: each gets it). */
const select: GradRule = (ctx, n, gy, need) => {
  const g = gy[0]!;
  const y = out0(n);
  return ins(n).map((x, i) => {
    if (!need[i]) return null;
    const mask = ctx.emit('Cast', [ctx.emit('Equal', [x, y])], { to: ctx.dtype(y) });
    return toInput(ctx, n, i, ctx.emit('Mul', [g, mask]));
  });
};

const mean: GradRule = (ctx, n, gy, need) => {
  const g = ctx.emit('Mul', [gy[0]!, ctx.scalar(1 / ins(n).length, ctx.dtype(out0(n)))]);
  return ins(n).map((_, i) => (need[i] ? toInput(ctx, n, i, g) : null));
};

const where: GradRule = (ctx, n, gy, need) => {
  const g = gy[0]!;
  const [c] = ins(n) as [string];
  const zero = ctx.scalar(0, ctx.dtype(out0(n)));
  return [
    null,
    need[1] ? toInput(ctx, n, 1, ctx.emit('Where', [c, g, zero])) : null,
    need[2] ? toInput(ctx, n, 2, ctx.emit('Where', [c, zero, g])) : null,
  ];
};

const cast: GradRule = (ctx, n, gy, need) => {
  const x = ins(n)[0]!;
  if (!need[0] || !FLOAT_TYPES.has(ctx.dtype(x))) return [null];
  const g = gy[0]!;
  return [ctx.dtype(x) === ctx.dtype(out0(n)) ? g : ctx.emit('Cast', [g], { to: ctx.dtype(x) })];
};

const clip: GradRule = (ctx, n, gy, need) => {
  const g = gy[0]!;
  const [x, lo, hi] = ins(n) as [string, string?, string?];
  const dt = ctx.dtype(x);
  let mask: string | null = null;
  const and = (m: string) => (mask = mask ? ctx.emit('And', [mask, m]) : m);
  if (lo) and(ctx.emit('GreaterOrEqual', [x, lo]));
  if (hi) and(ctx.emit('LessOrEqual', [x, hi]));
  const res = [need[0] ? (mask ? ctx.emit('Mul', [g, ctx.emit('Cast', [mask], { to: dt })]) : g) : null];
  // Gradients to the bounds themselves are not propagated (they are constants in practice).
  return [...res, ...ins(n).slice(1).map(() => null)];
};

export const elementwiseRules: Record<string, GradRule> = {
  Add: add,
  Sum: add,
  Sub: sub,
  Mul: mul,
  Div: div,
  Pow: pow,
  Max: select,
  Min: select,
  Mean: mean,
  Where: where,
  Cast: cast,
  Clip: clip,
  Identity: (_ctx, _n, gy, need) => [need[0] ? gy[0]! : null],
  Dropout: (_ctx, _n, gy, need) => [need[0] ? gy[0]! : null, null, null],
  Neg: unary((ctx, _x, _y, g) => ctx.emit('Neg', [g])),
  Sqrt: unary((ctx, _x, y, g, dt) => ctx.emit('Div', [ctx.emit('Mul', [g, ctx.scalar(0.5, dt)]), y])),
  Reciprocal: unary((ctx, _x, y, g) => ctx.emit('Neg', [ctx.emit('Mul', [g, ctx.emit('Mul', [y, y])])])),
  Exp: unary((ctx, _x, y, g) => ctx.emit('Mul', [g, y])),
  Log: unary((ctx, x, _y, g) => ctx.emit('Div', [g, x])),
  Sigmoid: unary((ctx, _x, y, g, dt) => ctx.emit('Mul', [ctx.emit('Mul', [g, y]), ctx.emit('Sub', [ctx.scalar(1, dt), y])])),
  Tanh: unary((ctx, _x, y, g, dt) => ctx.emit('Mul', [g, ctx.emit('Sub', [ctx.scalar(1, dt), ctx.emit('Mul', [y, y])])])),
  Sin: unary((ctx, x, _y, g) => ctx.emit('Mul', [g, ctx.emit('Cos', [x])])),
  Cos: unary((ctx, x, _y, g) => ctx.emit('Neg', [ctx.emit('Mul', [g, ctx.emit('Sin', [x])])])),
  Abs: unary((ctx, x, _y, g) => ctx.emit('Mul', [g, ctx.emit('Sign', [x])])),
  Relu: unary((ctx, x, _y, g, dt) => ctx.emit('Mul', [g, ctx.emit('Cast', [ctx.emit('Greater', [x, ctx.scalar(0, dt)])], { to: dt })])),
  Erf: unary((ctx, x, _y, g, dt) => {
    const e = ctx.emit('Exp', [ctx.emit('Neg', [ctx.emit('Mul', [x, x])])]);
    return ctx.emit('Mul', [g, ctx.emit('Mul', [e, ctx.scalar(2 / Math.sqrt(Math.PI), dt)])]);
  }),
  Softplus: unary((ctx, x, _y, g) => ctx.emit('Mul', [g, ctx.emit('Sigmoid', [x])])),
  LeakyRelu: (ctx, n, gy, need) => {
    if (!need[0]) return [null];
    const x = ins(n)[0]!;
    const dt = ctx.dtype(x);
    const alpha = (getAttr(n, 'alpha') as number | undefined) ?? 0.01;
    const pos = ctx.emit('Greater', [x, ctx.scalar(0, dt)]);
    return [ctx.emit('Mul', [gy[0]!, ctx.emit('Where', [pos, ctx.scalar(1, dt), ctx.scalar(alpha, dt)])])];
  },
};
