/**
 * SparseGPT's lazy batch updates on large layers as float32 matrix products in
 * onnxruntime (vectorised, on its intra-op threads): W[:, i2:] -= Err1 · Hinv[i1:i2, i2:]
 * is the rows x cols² part of the work (2048 x 5632² for a TinyLlama down_proj).
 * float32 is the reference implementation's own precision (it runs in float32 on the
 * GPU); the per-column OBS steps and the Cholesky factor stay in float64.
 */
import { makeModel, node, valueInfo } from '../onnx/graph-build.ts';
import { DataType } from '../onnx/proto.ts';
import { createSession, ort } from '../onnx/session.ts';
import type { LazyUpdate } from './sparsegpt.ts';

/** Layers at least this wide get the onnxruntime update; narrower ones the float64 one. */
export const ORT_LAZY_MIN_COLS = 1024;

let session: Promise<ort.InferenceSession> | null = null;

function matmul(): Promise<ort.InferenceSession> {
  session ??= createSession(
    makeModel({
      name: 'sparsegpt_lazy',
      node: [node('MatMul', ['err', 'hinv'], ['delta'])],
      input: [valueInfo('err', DataType.FLOAT, ['rows', 'count']), valueInfo('hinv', DataType.FLOAT, ['count', 'rest'])],
      output: [valueInfo('delta', DataType.FLOAT, ['rows', 'rest'])],
    }),
  );
  return session;
}

/** Apply one lazy update with a float32 product in onnxruntime. */
export async function lazyUpdateOrt(u: LazyUpdate): Promise<void> {
  const { W, rows, cols, err, blockSize, count, i1, i2, hinv } = u;
  const rest = cols - i2;
  const e = new Float32Array(rows * count);
  for (let r = 0; r < rows; r++) for (let i = 0; i < count; i++) e[r * count + i] = err[r * blockSize + i]!;
  const h = new Float32Array(count * rest);
  for (let i = 0; i < count; i++) {
    const src = (i1 + i) * cols + i2;
    for (let j = 0; j < rest; j++) h[i * rest + j] = hinv[src + j]!;
  }
  const out = await (await matmul()).run({ err: new ort.Tensor('float32', e, [rows, count]), hinv: new ort.Tensor('float32', h, [count, rest]) });
  const d = out.delta!.data as Float32Array;
  for (let r = 0; r < rows; r++) {
    const ro = r * cols + i2;
    const dro = r * rest;
    for (let j = 0; j < rest; j++) W[ro + j] -= d[dro + j]!;
  }
}
