/**
 * onnxruntime-node sessions built from in-memory models, with the thread settings
 * symprune uses everywhere (workers get one intra-op thread each).
 */
import * as ort from 'onnxruntime-node';
import { encodeModel } from './proto.ts';
import type { ModelProto } from './proto.ts';

export { ort };

export interface SessionOptions {
  /** Intra-op threads; default: all cores for the main process. */
  threads?: number;
}

export async function createSession(model: ModelProto | Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  return ort.InferenceSession.create(bytes, {
    intraOpNumThreads: opts.threads ?? 0,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
}

export function f32(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims as number[]);
}

export function i64(data: ArrayLike<number> | BigInt64Array, dims: readonly number[]): ort.Tensor {
  const arr = data instanceof BigInt64Array ? data : BigInt64Array.from(Array.from(data as ArrayLike<number>, (v) => BigInt(v)));
  return new ort.Tensor('int64', arr, dims as number[]);
}
