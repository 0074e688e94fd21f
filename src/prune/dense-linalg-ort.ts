/**
 * Blocked float64 Cholesky factorisation and lower-triangular inverse whose O(n³)
 * parts are matrix products in onnxruntime (vectorised, on its threads), for the
 * 5632-wide Hessians of a 1B model's down_proj: plain JavaScript loops take minutes
 * there. Diagonal blocks and panel solves stay in JavaScript (O(n² · block)).
 */
import { makeModel, node, valueInfo } from '../onnx/graph-build.ts';
import { DataType } from '../onnx/proto.ts';
import { createSession, ort } from '../onnx/session.ts';
import { choleskyLower, dampHessian, invertLower, reverseSquare, reversedInverseToUpper, type HessianAccumulator, type PreparedHessian } from './sparsegpt.ts';

const BLOCK = 256;
let session: Promise<ort.InferenceSession> | null = null;

/** C = A · B in float64, A [m, k], B [k, n]. */
async function gemm(a: Float64Array, m: number, k: number, b: Float64Array, n: number): Promise<Float64Array> {
  session ??= createSession(
    makeModel({
      name: 'gemm64',
      node: [node('MatMul', ['a', 'b'], ['c'])],
      input: [valueInfo('a', DataType.DOUBLE, ['m', 'k']), valueInfo('b', DataType.DOUBLE, ['k', 'n'])],
      output: [valueInfo('c', DataType.DOUBLE, ['m', 'n'])],
    }),
  );
  const out = await (await session).run({ a: new ort.Tensor('float64', a, [m, k]), b: new ort.Tensor('float64', b, [k, n]) });
  return out.c!.data as Float64Array;
}

function block(a: Float64Array, n: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * n + c0, r * n + c1), (r - r0) * w);
  return out;
}

function transpose(x: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c]!;
  return t;
}

/** In-place lower Cholesky factor of a symmetric positive-definite [n,n] matrix (upper triangle zeroed). */
export async function choleskyLowerBlocked(a: Float64Array, n: number): Promise<void> {
  for (let k0 = 0; k0 < n; k0 += BLOCK) {
    const k1 = Math.min(k0 + BLOCK, n);
    const b = k1 - k0;
    const d = block(a, n, k0, k1, k0, k1);
    choleskyLower(d, b);
    for (let r = 0; r < b; r++) a.set(d.subarray(r * b, (r + 1) * b), (k0 + r) * n + k0);
    if (k1 === n) break;
    // Panel: L21 = A21 · L11⁻ᵀ, row by row (forward substitution).
    const m = n - k1;
    const l21 = block(a, n, k1, n, k0, k1);
    for (let i = 0; i < m; i++) {
      const ro = i * b;
      for (let j = 0; j < b; j++) {
        let s = l21[ro + j]!;
        for (let t = 0; t < j; t++) s -= l21[ro + t]! * d[j * b + t]!;
        l21[ro + j] = s / d[j * b + j]!;
      }
      a.set(l21.subarray(ro, ro + b), (k1 + i) * n + k0);
    }
    // Trailing update: A22 -= L21 · L21ᵀ.
    const upd = await gemm(l21, m, b, transpose(l21, m, b), m);
    for (let i = 0; i < m; i++) {
      const ro = (k1 + i) * n + k1;
      for (let j = 0; j <= i; j++) a[ro + j] -= upd[i * m + j]!;
    }
  }
  for (let i = 0; i < n; i++) a.fill(0, i * n + i + 1, (i + 1) * n);
}

/** Inverse of a lower-triangular [n,n] matrix (a new one), by row blocks: X[I,:i0] = -L_II⁻¹ · (L[I,:i0] · X[:i0,:i0]). */
export async function invertLowerBlocked(l: Float64Array, n: number): Promise<Float64Array> {
  const x = new Float64Array(n * n);
  for (let i0 = 0; i0 < n; i0 += BLOCK) {
    const i1 = Math.min(i0 + BLOCK, n);
    const b = i1 - i0;
    const dinv = invertLower(block(l, n, i0, i1, i0, i1), b);
    for (let r = 0; r < b; r++) x.set(dinv.subarray(r * b, r * b + r + 1), (i0 + r) * n + i0);
    if (i0 === 0) continue;
    const prod = await gemm(block(l, n, i0, i1, 0, i0), b, i0, block(x, n, 0, i0, 0, i0), i0);
    // X[I, :i0] = -Dinv · prod
    for (let r = 0; r < b; r++) {
      const out = (i0 + r) * n;
      for (let t = 0; t <= r; t++) {
        const c = -dinv[r * b + t]!;
        if (c === 0) continue;
        const po = t * i0;
        for (let j = 0; j < i0; j++) x[out + j] += c * prod[po + j]!;
      }
    }
  }
  return x;
}

/** upperCholeskyOfInverse (sparsegpt.ts) with the blocked routines; `h` is consumed. */
export async function upperCholeskyOfInverseBlocked(h: Float64Array, n: number): Promise<Float64Array> {
  reverseSquare(h);
  await choleskyLowerBlocked(h, n);
  return reversedInverseToUpper(await invertLowerBlocked(h, n), n);
}

/** The accumulator's prepared Hessian with the blocked factorisation, once per input. */
export function preparedBlocked(acc: HessianAccumulator, percDamp = 0.01): Promise<PreparedHessian> {
  return acc.prepareWith(`ort:${percDamp}`, async () => {
    const H = acc.hessian();
    const dead = dampHessian(H, acc.cols, percDamp);
    return { cols: acc.cols, dead, hinv: await upperCholeskyOfInverseBlocked(H, acc.cols) };
  });
}
