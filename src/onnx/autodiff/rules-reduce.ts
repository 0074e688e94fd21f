/**
 * Gradient rules for reductions and normalisations along an axis: ReduceSum/Mean/Max/
 * Min/SumSquare/L2, Softmax, LogSoftmax. Axes come from the attribute or (opset >= 13
 * for ReduceSum, >= 18 for the others) the constant second input.
 */
import type { NodeProto } from '../proto.ts';
import { getAttr } from '../graph-build.ts';
import { numel } from '../tensor.ts';
import { InputError } from '../../errors.ts';
import type { GradContext, GradRule } from './context.ts';

const ins = (n: NodeProto): string[] => n.input ?? [];
const out0 = (n: NodeProto): string => n.output![0]!;

function reduceAxes(ctx: GradContext, n: NodeProto): number[] {
  const xd = ctx.dims(ins(n)[0]!);
  const axesInput = ins(n)[1];
  let axes = getAttr(n, 'axes') as number[] | undefined;
  if (axesInput) axes = ctx.requireStatic(axesInput, n, 'axes');
  if (!axes || axes.length === 0) {
    if (((getAttr(n, 'noop_with_empty_axes') as number | undefined) ?? 0) === 1) return [];
    return xd.map((_, i) => i);
  }
  return axes.map((a) => (a < 0 ? a + xd.length : a));
}

/** The output gradient reshaped with the reduced axes kept as size 1. */
function keptGrad(ctx: GradContext, n: NodeProto, g: string, axes: number[]): { gk: string; kd: number[] } {
  const xd = ctx.dims(ins(n)[0]!);
  const kd = xd.map((d, i) => (axes.includes(i) ? 1 : d));
  return { gk: ctx.reshape(g, ctx.dims(out0(n)), kd), kd };
}

/** Output value with the reduced axes kept as size 1. */
function keptOut(ctx: GradContext, n: NodeProto, kd: number[]): string {
  return ctx.reshape(out0(n), ctx.dims(out0(n)), kd);
}

function reduceRule(kind: 'sum' | 'mean' | 'max' | 'sumsq' | 'l2'): GradRule {
  return (ctx, n, gy, need) => {
    const res: Array<string | null> = ins(n).map(() => null);
    if (!need[0]) return res;
    const x = ins(n)[0]!;
    const xd = ctx.dims(x);
    const dt = ctx.dtype(x);
    const axes = reduceAxes(ctx, n);
    let { gk, kd } = keptGrad(ctx, n, gy[0]!, axes);
    const expand = (t: string) => ctx.emit('Expand', [t, ctx.ints(xd)]);
    switch (kind) {
      case 'sum':
        res[0] = numel(kd) === numel(xd) ? ctx.reshape(gk, kd, xd) : expand(gk);
        break;
      case 'mean': {
        const count = numel(xd) / numel(kd);
        gk = ctx.emit('Mul', [gk, ctx.scalar(1 / count, dt)]);
        res[0] = numel(kd) === numel(xd) ? ctx.reshape(gk, kd, xd) : expand(gk);
        break;
      }
      case 'max': {
        const mask = ctx.emit('Cast', [ctx.emit('Equal', [x, keptOut(ctx, n, kd)])], { to: dt });
        res[0] = ctx.emit('Mul', [mask, gk]);
        break;
      }
      case 'sumsq':
        res[0] = ctx.emit('Mul', [ctx.emit('Mul', [x, ctx.scalar(2, dt)]), gk]);
        break;
      case 'l2':
        res[0] = ctx.emit('Mul', [ctx.emit('Div', [x, keptOut(ctx, n, kd)]), gk]);
        break;
    }
    return res;
  };
}

function softmaxAxis(ctx: GradContext, n: NodeProto): number {
  const rank = ctx.dims(out0(n)).length;
  const axis = (getAttr(n, 'axis') as number | undefined) ?? (ctx.opset >= 13 ? -1 : 1);
  const a = axis < 0 ? axis + rank : axis;
  if (ctx.opset < 13 && a !== rank - 1) {
    throw new InputError(`gradient: ${n.opType} node '${n.name}': opset ${ctx.opset} flattening softmax over axis ${a} is not supported`);
  }
  return a;
}

const softmax: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return [null];
  const y = out0(n);
  const axis = softmaxAxis(ctx, n);
  const gyy = ctx.emit('Mul', [gy[0]!, y]);
  const s = ctx.emit('ReduceSum', [gyy, ctx.ints([axis])], { keepdims: 1 });
  return [ctx.emit('Sub', [gyy, ctx.emit('Mul', [y, s])])];
};

const logSoftmax: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return [null];
  const y = out0(n);
  const axis = softmaxAxis(ctx, n);
  const s = ctx.emit('ReduceSum', [gy[0]!, ctx.ints([axis])], { keepdims: 1 });
  return [ctx.emit('Sub', [gy[0]!, ctx.emit('Mul', [ctx.emit('Exp', [y]), s])])];
};

export const reduceRules: Record<string, GradRule> = {
  ReduceSum: reduceRule('sum'),
  ReduceMean: reduceRule('mean'),
  ReduceMax: reduceRule('max'),
  ReduceMin: reduceRule('max'),
  ReduceSumSquare: reduceRule('sumsq'),
  ReduceL2: reduceRule('l2'),
  Softmax: softmax,
  LogSoftmax: logSoftmax,
};
