/**
 * Gradient rules for data movement: reshapes, transposes, broadcasts, concatenation,
 * slicing and gathering. Slice bounds and axes are read from the probe (they are fixed
 * once input shapes are fixed); gathers scatter-add their gradient back.
 */
import { DataType, type NodeProto } from '../proto.ts';
import { getAttr } from '../graph-build.ts';
import { InputError } from '../../errors.ts';
import type { GradContext, GradRule } from './context.ts';

const ins = (n: NodeProto): string[] => n.input ?? [];
const out0 = (n: NodeProto): string => n.output![0]!;
const normAxis = (a: number, rank: number): number => (a < 0 ? a + rank : a);

/** Any op that only rearranges elements into a new shape of the same size. */
const reshapeLike: GradRule = (ctx, n, gy, need) => {
  const x = ins(n)[0]!;
  const res: Array<string | null> = ins(n).map(() => null);
  if (need[0]) res[0] = ctx.reshape(gy[0]!, ctx.dims(out0(n)), ctx.dims(x));
  return res;
};

const transpose: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return [null];
  const rank = ctx.dims(ins(n)[0]!).length;
  const perm = (getAttr(n, 'perm') as number[] | undefined) ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const inv = new Array<number>(rank);
  perm.forEach((p, i) => (inv[p] = i));
  if (inv.every((p, i) => p === i)) return [gy[0]!];
  return [ctx.emit('Transpose', [gy[0]!], { perm: inv })];
};

const expand: GradRule = (ctx, n, gy, need) => [need[0] ? ctx.reduceTo(gy[0]!, ctx.dims(out0(n)), ctx.dims(ins(n)[0]!)) : null, null];

const concat: GradRule = (ctx, n, gy, need) => {
  const rank = ctx.dims(out0(n)).length;
  const axis = normAxis(getAttr(n, 'axis') as number, rank);
  const inputs = ins(n);
  const sizes = inputs.map((x) => ctx.dims(x)[axis]!);
  if (inputs.length === 1) return [need[0] ? gy[0]! : null];
  const parts = ctx.emitN('Split', [gy[0]!, ctx.ints(sizes)], inputs.length, { axis });
  return parts.map((p, i) => (need[i] ? p : null));
};

const split: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return ins(n).map(() => null);
  const outs = n.output ?? [];
  const rank = ctx.dims(ins(n)[0]!).length;
  const axis = normAxis((getAttr(n, 'axis') as number | undefined) ?? 0, rank);
  const parts = outs.map((o, i) => gy[i] ?? ctx.zeros(ctx.dims(o), ctx.dtype(o)));
  const g = parts.length === 1 ? parts[0]! : ctx.emit('Concat', parts, { axis });
  return [g, ...ins(n).slice(1).map(() => null)];
};

/** ONNX Slice bound normalisation for one axis: first index, element count. */
function sliceAxis(start: number, end: number, step: number, dim: number): { first: number; count: number } {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = Math.min(Math.max(start, 0), dim);
    end = Math.min(Math.max(end, 0), dim);
    return { first: start, count: Math.max(0, Math.ceil((end - start) / step)) };
  }
  start = Math.min(Math.max(start, 0), dim - 1);
  end = Math.min(Math.max(end, -1), dim - 1);
  return { first: start, count: Math.max(0, Math.ceil((start - end) / -step)) };
}

const slice: GradRule = (ctx, n, gy, need) => {
  const res: Array<string | null> = ins(n).map(() => null);
  if (!need[0]) return res;
  const [x, s, e, ax, st] = ins(n) as [string, string, string, string?, string?];
  const xd = ctx.dims(x);
  const yd = ctx.dims(out0(n));
  const dt = ctx.dtype(x);
  const starts = ctx.requireStatic(s, n, 'starts');
  const ends = ctx.requireStatic(e, n, 'ends');
  const axes = ax ? ctx.requireStatic(ax, n, 'axes').map((a) => normAxis(a, xd.length)) : starts.map((_, i) => i);
  const steps = st ? ctx.requireStatic(st, n, 'steps') : starts.map(() => 1);
  if (yd.some((d) => d === 0)) {
    res[0] = ctx.zeros(xd, dt);
    return res;
  }
  let g = gy[0]!;
  let gd = [...yd];
  const padsBefore = xd.map(() => 0);
  const padsAfter = xd.map(() => 0);
  axes.forEach((a, i) => {
    const step = steps[i]!;
    const { first, count } = sliceAxis(starts[i]!, ends[i]!, step, xd[a]!);
    const k = Math.abs(step);
    const lo = step > 0 ? first : first + (count - 1) * step;
    if (step < 0) {
      g = ctx.emit('Slice', [g, ctx.ints([-1]), ctx.ints([-(gd[a]! + 1)]), ctx.ints([a]), ctx.ints([-1])]);
    }
    let len = count;
    if (k > 1) {
      // Interleave k-1 zeros after every element along axis a.
      const rank1 = gd.length + 1;
      const p = new Array<number>(2 * rank1).fill(0);
      p[rank1 + a + 1] = k - 1;
      const unsq = ctx.emit('Unsqueeze', [g, ctx.ints([a + 1])]);
      const padded = ctx.emit('Pad', [unsq, ctx.ints(p)]);
      const wide = [...gd];
      wide[a] = count * k;
      g = ctx.emit('Reshape', [padded, ctx.ints(wide)]);
      len = (count - 1) * k + 1;
      if (len !== count * k) g = ctx.emit('Slice', [g, ctx.ints([0]), ctx.ints([len]), ctx.ints([a])]);
      gd = wide;
      gd[a] = len;
    }
    padsBefore[a] = lo;
    padsAfter[a] = xd[a]! - lo - len;
  });
  if (padsBefore.some((p) => p !== 0) || padsAfter.some((p) => p !== 0)) {
    g = ctx.emit('Pad', [g, ctx.ints([...padsBefore, ...padsAfter]), ctx.scalar(0, dt)], { mode: 'constant' });
  }
  res[0] = g;
  return res;
};

/** int64 indices with negatives wrapped (ScatterND wants them in range). */
function wrapIndices(ctx: GradContext, idx: string, dim: number): string {
  const v = ctx.staticValues(idx);
  const dims = ctx.dims(idx);
  if (v) return ctx.reshape(ctx.ints(v.map((i) => (i < 0 ? i + dim : i)), dims.length === 0), [v.length], dims);
  let i = idx;
  if (ctx.dtype(idx) !== DataType.INT64) i = ctx.emit('Cast', [idx], { to: DataType.INT64 });
  const neg = ctx.emit('Less', [i, ctx.ints([0], true)]);
  return ctx.emit('Where', [neg, ctx.emit('Add', [i, ctx.ints([dim], true)]), i]);
}

const gather: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return [null, null];
  const [x, idx] = ins(n) as [string, string];
  const xd = ctx.dims(x);
  const id = ctx.dims(idx);
  const q = id.length;
  const axis = normAxis((getAttr(n, 'axis') as number | undefined) ?? 0, xd.length);
  let g = gy[0]!;
  const indices = ctx.reshape(wrapIndices(ctx, idx, xd[axis]!), id, [...id, 1]);
  if (axis === 0) return [ctx.emit('ScatterND', [ctx.zeros(xd, ctx.dtype(x)), indices, g], { reduction: 'add' }), null];
  // Move the gathered axes to the front, scatter along axis 0, move back.
  const r = xd.length;
  const gRank = r - 1 + q;
  const perm = [...Array.from({ length: q }, (_, i) => axis + i), ...Array.from({ length: axis }, (_, i) => i),
    ...Array.from({ length: gRank - axis - q }, (_, i) => axis + q + i)];
  g = ctx.emit('Transpose', [g], { perm });
  const td = [xd[axis]!, ...xd.slice(0, axis), ...xd.slice(axis + 1)];
  const sc = ctx.emit('ScatterND', [ctx.zeros(td, ctx.dtype(x)), indices, g], { reduction: 'add' });
  const back = [...Array.from({ length: axis }, (_, i) => i + 1), 0, ...Array.from({ length: r - axis - 1 }, (_, i) => axis + 1 + i)];
  return [ctx.emit('Transpose', [sc], { perm: back }), null];
};

const gatherElements: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return [null, null];
  const [x, idx] = ins(n) as [string, string];
  const axis = (getAttr(n, 'axis') as number | undefined) ?? 0;
  return [ctx.emit('ScatterElements', [ctx.zeros(ctx.dims(x), ctx.dtype(x)), idx, gy[0]!], { axis, reduction: 'add' }), null];
};

const trilu: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return ins(n).map(() => null);
  const upper = (getAttr(n, 'upper') as number | undefined) ?? 1;
  const k = ins(n)[1];
  return [ctx.emit('Trilu', k ? [gy[0]!, k] : [gy[0]!], { upper }), null];
};

const tile: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return [null, null];
  const [x, r] = ins(n) as [string, string];
  const xd = ctx.dims(x);
  const reps = ctx.requireStatic(r, n, 'repeats');
  // [r0*d0, r1*d1, ...] -> [r0, d0, r1, d1, ...] -> sum over the repeat axes.
  const split = xd.flatMap((d, i) => [reps[i]!, d]);
  const g = ctx.emit('Reshape', [gy[0]!, ctx.ints(split)]);
  const s = ctx.emit('ReduceSum', [g, ctx.ints(xd.map((_, i) => 2 * i))], { keepdims: 0 });
  return [s, null];
};

const pad: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return ins(n).map(() => null);
  const mode = (getAttr(n, 'mode') as string | undefined) ?? 'constant';
  if (mode !== 'constant') throw new InputError(`gradient: Pad node '${n.name}': mode '${mode}' has no gradient rule (only constant)`);
  const [x, p, , ax] = ins(n) as [string, string, string?, string?];
  const xd = ctx.dims(x);
  const pads = ctx.requireStatic(p, n, 'pads');
  const axes = ax ? ctx.requireStatic(ax, n, 'axes').map((a) => normAxis(a, xd.length)) : xd.map((_, i) => i);
  const m = axes.length;
  const sAxes: number[] = [];
  const sStarts: number[] = [];
  const sEnds: number[] = [];
  axes.forEach((a, i) => {
    const before = pads[i]!;
    const after = pads[m + i]!;
    if (before === 0 && after === 0) return;
    sAxes.push(a);
    sStarts.push(before);
    sEnds.push(before + xd[a]!);
  });
  if (pads.some((v) => v < 0)) throw new InputError(`gradient: Pad node '${n.name}': negative pads have no gradient rule`);
  if (!sAxes.length) return [gy[0]!, ...ins(n).slice(1).map(() => null)];
  return [ctx.emit('Slice', [gy[0]!, ctx.ints(sStarts), ctx.ints(sEnds), ctx.ints(sAxes)]), ...ins(n).slice(1).map(() => null)];
};

export const shapeRules: Record<string, GradRule> = {
  Reshape: reshapeLike,
  Flatten: reshapeLike,
  Squeeze: reshapeLike,
  Unsqueeze: reshapeLike,
  Transpose: transpose,
  Expand: expand,
  Concat: concat,
  Split: split,
  Slice: slice,
  Gather: gather,
  GatherElements: gatherElements,
  Trilu: trilu,
  Tile: tile,
  Pad: pad,
};
