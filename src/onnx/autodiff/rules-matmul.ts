/**
 * Gradient rules for MatMul and Gemm. Weight gradients of a linear layer ([B,T,K] x [K,N])
 * become one Gemm over the flattened tokens with the transpose folded into transA, so
 * the backward pass costs two matrix products per forward product and no copies.
 */
import type { NodeProto } from '../proto.ts';
import { getAttr } from '../graph-build.ts';
import { numel } from '../tensor.ts';
import type { GradRule } from './context.ts';

const ins = (n: NodeProto): string[] => n.input ?? [];
const out0 = (n: NodeProto): string => n.output![0]!;

function swapLast(rank: number): number[] {
  const p = Array.from({ length: rank }, (_, i) => i);
  p[rank - 1] = rank - 2;
  p[rank - 2] = rank - 1;
  return p;
}

function batchShape(dims: number[]): number[] {
  return dims.slice(0, -2);
}

const matmul: GradRule = (ctx, n, gy, need) => {
  const [a0, b0] = ins(n) as [string, string];
  const g0 = gy[0]!;
  const ad0 = ctx.dims(a0);
  const bd0 = ctx.dims(b0);
  const yd0 = ctx.dims(out0(n));
  // Promote 1-D operands to matrices as MatMul does, and the output gradient alike.
  let a = a0, b = b0, g = g0;
  let ad = ad0, bd = bd0, yd = yd0;
  if (ad0.length === 1) {
    ad = [1, ad0[0]!];
    a = ctx.reshape(a0, ad0, ad);
  }
  if (bd0.length === 1) {
    bd = [bd0[0]!, 1];
    b = ctx.reshape(b0, bd0, bd);
  }
  if (ad0.length === 1 || bd0.length === 1) {
    if (ad0.length === 1 && bd0.length === 1) yd = [1, 1];
    else if (ad0.length === 1) yd = [...batchShape(bd), 1, bd[bd.length - 1]!];
    else yd = [...ad.slice(0, -1), 1];
    g = ctx.reshape(g0, yd0, yd);
  }
  const K = ad[ad.length - 1]!;
  const N = bd[bd.length - 1]!;
  let ga: string | null = null;
  let gb: string | null = null;
  if (need[0]) {
    let r: string;
    let rd: number[];
    if (bd.length === 2) {
      // [.., M, N] x [K, N]^T as one 2-D Gemm over all rows.
      const rows = numel(yd) / N;
      const g2 = ctx.reshape(g, yd, [rows, N]);
      r = ctx.emit('Gemm', [g2, b], { transB: 1 });
      rd = [...yd.slice(0, -1), K];
      r = ctx.reshape(r, [rows, K], rd);
    } else {
      r = ctx.emit('MatMul', [g, ctx.emit('Transpose', [b], { perm: swapLast(bd.length) })]);
      rd = [...yd.slice(0, -1), K];
    }
    ga = ctx.reshape(ctx.reduceTo(r, rd, ad), ad, ad0);
  }
  if (need[1]) {
    let r: string;
    let rd: number[];
    if (bd.length === 2) {
      // Sum over every leading row of A: A2^T x g2 with the transpose folded into Gemm.
      // With a 2-D B, A's leading dims are the output's, so the rows line up.
      const rows = numel(ad) / K;
      const a2 = ctx.reshape(a, ad, [rows, K]);
      const g2 = ctx.reshape(g, yd, [rows, N]);
      r = ctx.emit('Gemm', [a2, g2], { transA: 1 });
      rd = [K, N];
    } else {
      r = ctx.emit('MatMul', [ctx.emit('Transpose', [a], { perm: swapLast(ad.length) }), g]);
      rd = [...yd.slice(0, -2), K, N];
    }
    gb = ctx.reshape(ctx.reduceTo(r, rd, bd), bd, bd0);
  }
  return [ga, gb];
};

const gemm: GradRule = (ctx, n, gy, need) => {
  const [a, b, c] = ins(n) as [string, string, string?];
  const g = gy[0]!;
  const alpha = (getAttr(n, 'alpha') as number | undefined) ?? 1;
  const beta = (getAttr(n, 'beta') as number | undefined) ?? 1;
  const tA = (getAttr(n, 'transA') as number | undefined) ?? 0;
  const tB = (getAttr(n, 'transB') as number | undefined) ?? 0;
  const res: Array<string | null> = [null, null, null].slice(0, ins(n).length);
  const at = (x: Record<string, number>) => (alpha !== 1 ? { ...x, alpha: { float: alpha } } : x);
  if (need[0]) {
    res[0] = tA === 0
      ? ctx.emit('Gemm', [g, b], at(tB ? {} : { transB: 1 }))
      : ctx.emit('Gemm', [b, g], at(tB ? { transA: 1, transB: 1 } : { transB: 1 }));
  }
  if (need[1]) {
    res[1] = tB === 0
      ? ctx.emit('Gemm', [a, g], at(tA ? {} : { transA: 1 }))
      : ctx.emit('Gemm', [g, a], at(tA ? { transA: 1, transB: 1 } : { transA: 1 }));
  }
  if (c && need[2]) {
    let r = ctx.reduceTo(g, ctx.dims(out0(n)), ctx.dims(c));
    if (beta !== 1) r = ctx.emit('Mul', [r, ctx.scalar(beta, ctx.dtype(c))]);
    res[2] = r;
  }
  return res;
};

export const matmulRules: Record<string, GradRule> = { MatMul: matmul, Gemm: gemm };
