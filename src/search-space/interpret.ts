/**
 * The reference interpreter: one tree walk, one Float32Array per node, plain loops, no
 * cleverness. It exists to be obviously right (see semantics.ts for the exact arithmetic:
 * float32 per operator, float64 statistics over finite elements); the compiled kernels are
 * tested against it bit for bit.
 */
import { InputError } from '../errors.ts';
import {
  BINARY_FN,
  UNARY_FN,
  divElement,
  finishMean,
  finishMms,
  finishNorm,
  finishStd,
  mmsElement,
  zsnElement,
  type ElementwiseUnary,
} from './semantics.ts';
import { checkTerminalData, type TerminalData } from './terminal-data.ts';
import { terminalsOf, type Shape, type Tree } from './tree.ts';
import { validateTree } from './validate.ts';

/** A value with its shape: 'full' holds rows*cols elements, 'row' holds cols. */
export interface ShapedValue {
  shape: Shape;
  data: Float32Array;
}

/** Scores of one layer under the metric, [rows * cols]; a fresh array. */
export function interpret(tree: Tree, data: TerminalData): Float32Array {
  const reason = validateTree(tree);
  if (reason) throw new InputError(`metric ${reason}`);
  checkTerminalData(data, terminalsOf(tree).has('G'));
  const v = evaluate(tree, data);
  return v.data === data.W || v.data === data.G ? v.data.slice() : v.data;
}

/** Any subtree, including row-shaped ones (the compiler precomputes those with this). */
export function evaluate(t: Tree, d: TerminalData): ShapedValue {
  switch (t.op) {
    case 'W':
      return { shape: 'full', data: d.W };
    case 'G':
      if (!d.G) throw new InputError('terminal data: the metric uses G but no gradient statistics were given');
      return { shape: 'full', data: d.G };
    case 'X':
      return { shape: 'row', data: d.X };
    case 'R':
    case 'A':
    case 'M':
    case 'D': {
      const v = d.blocks?.[t.op];
      if (!v) throw new InputError(`terminal data: no per-block statistic ${t.op}`);
      return { shape: 'row', data: v };
    }
    case 'mms': {
      const a = evaluate(t.args[0]!, d);
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < a.data.length; i++) {
        const v = a.data[i]!;
        if (v - v === 0) {
          if (v < min) min = v;
          if (v > max) max = v;
        }
      }
      const { mn, rg } = finishMms(min, max);
      const out = new Float32Array(a.data.length);
      for (let i = 0; i < out.length; i++) out[i] = mmsElement(a.data[i]!, mn, rg);
      return { shape: a.shape, data: out };
    }
    case 'zsn': {
      const a = evaluate(t.args[0]!, d);
      let sum = 0;
      let n = 0;
      for (let i = 0; i < a.data.length; i++) {
        const v = a.data[i]!;
        if (v - v === 0) {
          sum += v;
          n++;
        }
      }
      const mu = finishMean(sum, n);
      let ss = 0;
      for (let i = 0; i < a.data.length; i++) {
        const v = a.data[i]!;
        if (v - v === 0) {
          const dv = v - mu;
          ss += dv * dv;
        }
      }
      const sd = finishStd(ss, n);
      const out = new Float32Array(a.data.length);
      for (let i = 0; i < out.length; i++) out[i] = zsnElement(a.data[i]!, mu, sd);
      return { shape: a.shape, data: out };
    }
    case 'div': {
      const x = evaluate(t.args[0]!, d);
      const y = evaluate(t.args[1]!, d);
      const shape: Shape = x.shape === 'full' || y.shape === 'full' ? 'full' : 'row';
      let q = 0;
      for (let i = 0; i < y.data.length; i++) {
        const v = y.data[i]!;
        if (v - v === 0) q += v * v;
      }
      const c = finishNorm(q, shape === 'full' && y.shape === 'row' ? d.rows : 1);
      const xs = broadcast(x, shape, d);
      const out = new Float32Array(xs.length);
      for (let i = 0; i < out.length; i++) out[i] = divElement(xs[i]!, c);
      return { shape, data: out };
    }
    case 'add':
    case 'sub':
    case 'mul': {
      const a = evaluate(t.args[0]!, d);
      const b = evaluate(t.args[1]!, d);
      const shape: Shape = a.shape === 'full' || b.shape === 'full' ? 'full' : 'row';
      const as = broadcast(a, shape, d);
      const bs = broadcast(b, shape, d);
      const fn = BINARY_FN[t.op];
      const out = new Float32Array(as.length);
      for (let i = 0; i < out.length; i++) out[i] = fn(as[i]!, bs[i]!);
      return { shape, data: out };
    }
    default: {
      const a = evaluate(t.args[0]!, d);
      const fn = UNARY_FN[t.op as ElementwiseUnary];
      const out = new Float32Array(a.data.length);
      for (let i = 0; i < out.length; i++) out[i] = fn(a.data[i]!);
      return { shape: a.shape, data: out };
    }
  }
}

/** The value expanded to `shape` (a row vector repeated over rows), as torch broadcasting. */
function broadcast(v: ShapedValue, shape: Shape, d: TerminalData): Float32Array {
  if (v.shape === shape) return v.data;
  const out = new Float32Array(d.rows * d.cols);
  for (let r = 0; r < d.rows; r++) out.set(v.data, r * d.cols);
  return out;
}
