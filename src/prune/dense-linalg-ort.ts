/**
 * H⁻¹'s upper Cholesky factor for wide layers (the 5632-wide Hessians of a 1B model's
 * down_proj) with the O(n³) work as float64 matrix products in onnxruntime (vectorised,
 * on its threads): plain JavaScript loops take minutes there.
 *
 * Only L⁻¹ (L the lower Cholesky factor) is needed, and it has a recursion made of
 * products: with A = [[A11, ·], [A21, A22]],
 *   L11⁻¹ = rec(A11),  L21 = A21 · L11⁻ᵀ,  S = A22 − L21 · L21ᵀ,  L22⁻¹ = rec(S),
 *   L⁻¹ = [[L11⁻¹, 0], [−L22⁻¹ · L21 · L11⁻¹, L22⁻¹]],
 * down to blocks of at most LEAF, factored and inverted in JavaScript. Copies are
 * O(n² log n); nothing but the products is O(n³). The factor is made in the Hessian's
 * own memory.
 */
import { makeModel, node, valueInfo } from '../onnx/graph-build.ts';
import { DataType } from '../onnx/proto.ts';
import { createSession, ort } from '../onnx/session.ts';
import { choleskyLower, dampHessian, invertLower, reverseSquare, reversedInverseToUpper, type HessianAccumulator, type PreparedHessian } from './sparsegpt.ts';

const LEAF = 256;

interface GemmKind {
  transB: 0 | 1;
  withC: boolean;
}
const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** A float64 Gemm session Y = α · A · B(ᵀ) (+ C); α is an attribute, so one session per value. */
function gemmSession(kind: GemmKind, alpha: number): Promise<ort.InferenceSession> {
  const key = `${kind.transB}:${kind.withC}:${alpha}`;
  let s = sessions.get(key);
  if (!s) {
    const inputs = kind.withC ? ['a', 'b', 'c'] : ['a', 'b'];
    s = createSession(
      makeModel({
        name: 'gemm64',
        node: [node('Gemm', inputs, ['y'], 'gemm', { transB: kind.transB, alpha: { float: alpha }, beta: { float: 1 } })],
        input: [
          valueInfo('a', DataType.DOUBLE, ['m', 'k']),
          valueInfo('b', DataType.DOUBLE, kind.transB ? ['n', 'k'] : ['k', 'n']),
          ...(kind.withC ? [valueInfo('c', DataType.DOUBLE, ['m', 'n'])] : []),
        ],
        output: [valueInfo('y', DataType.DOUBLE, ['m', 'n'])],
      }),
    );
    sessions.set(key, s);
  }
  return s;
}

/** Y = α · A · B (or A · Bᵀ with transB) (+ C), float64; A [m, k]. */
async function gemm(a: Float64Array, m: number, k: number, b: Float64Array, n: number, o: { transB?: boolean; alpha?: number; c?: Float64Array } = {}): Promise<Float64Array> {
  const transB = o.transB ? 1 : 0;
  const session = await gemmSession({ transB, withC: !!o.c }, o.alpha ?? 1);
  const feeds: Record<string, ort.Tensor> = { a: new ort.Tensor('float64', a, [m, k]), b: new ort.Tensor('float64', b, transB ? [n, k] : [k, n]) };
  if (o.c) feeds.c = new ort.Tensor('float64', o.c, [m, n]);
  return (await session.run(feeds)).y!.data as Float64Array;
}

/** Rows [r0, r1) x columns [c0, c1) of the [·, n] matrix `a`, as a contiguous matrix. */
function block(a: Float64Array, n: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * n + c0, r * n + c1), (r - r0) * w);
  return out;
}

/** Write the contiguous [rows, w] matrix `src` into `a` ([·, n]) at (r0, c0). */
function place(a: Float64Array, n: number, r0: number, c0: number, src: Float64Array, w: number): void {
  for (let r = 0; r < src.length / w; r++) a.set(src.subarray(r * w, (r + 1) * w), (r0 + r) * n + c0);
}

/**
 * L⁻¹ for L the lower Cholesky factor of the symmetric positive-definite [n, n] `a`
 * (its lower triangle is read), written over `a` and returned: each quarter of `a` is
 * read for the last time before its part of L⁻¹ is placed there, so the only other
 * memory is the quarter-sized pieces of the recursion.
 */
export async function inverseCholeskyLower(a: Float64Array, n: number): Promise<Float64Array> {
  if (n <= LEAF) {
    choleskyLower(a, n);
    a.set(invertLower(a, n));
    return a;
  }
  // Split on a multiple of 64 so the leaves keep whole vector-friendly widths.
  const h = Math.ceil(n / 2 / 64) * 64;
  const m = n - h;
  const li11 = await inverseCholeskyLower(block(a, n, 0, h, 0, h), h);
  place(a, n, 0, 0, li11, h);
  const l21 = await gemm(block(a, n, h, n, 0, h), m, h, li11, h, { transB: true });
  const li22 = await inverseCholeskyLower(await gemm(l21, m, h, l21, m, { transB: true, alpha: -1, c: block(a, n, h, n, h, n) }), m);
  place(a, n, h, h, li22, m);
  place(a, n, h, 0, await gemm(li22, m, m, await gemm(l21, m, h, li11, h), h, { alpha: -1 }), h);
  for (let r = 0; r < h; r++) a.fill(0, r * n + h, (r + 1) * n);
  return a;
}

/** upperCholeskyOfInverse (sparsegpt.ts) with the products in onnxruntime; `h` is consumed and becomes the factor. */
export async function upperCholeskyOfInverseBlocked(h: Float64Array, n: number): Promise<Float64Array> {
  reverseSquare(h);
  return reversedInverseToUpper(await inverseCholeskyLower(h, n));
}

/** The accumulator's prepared Hessian with the blocked factorisation, once per input. */
export function preparedBlocked(acc: HessianAccumulator, percDamp = 0.01): Promise<PreparedHessian> {
  return acc.prepareWith(`ort:${percDamp}`, async () => {
    const H = acc.takeHessian();
    const dead = dampHessian(H, acc.cols, percDamp);
    return { cols: acc.cols, dead, hinv: await upperCholeskyOfInverseBlocked(H, acc.cols) };
  });
}
