/**
 * onnxruntime-node sessions with the settings symprune uses everywhere: thread count,
 * execution provider (CPU, or CUDA when its binaries are installed), and weights
 * that never travel inside the model bytes once a model is large.
 *
 * A model is handed to onnxruntime as one protobuf buffer, which cannot hold more
 * than 2 GB (and Node cannot encode one over 4 GiB). So when a model's initializers
 * are large, the big ones become plain graph inputs and are fed on every run as
 * views of their bytes (onnxruntime-node wraps CPU feeds without copying them): the
 * model bytes stay small and no second copy of the weights is made.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import { encodeModel, DataType } from './proto.ts';
import type { ModelProto, TensorProto } from './proto.ts';
import { initializersToInputs, cloneModel } from './graph-edit.ts';
import { floatToHalf, tensorDims, tensorToFloat32 } from './tensor.ts';

export { ort };

export type Device = 'cpu' | 'cuda';
export const DEVICES: readonly Device[] = ['cpu', 'cuda'];

export interface SessionOptions {
  /** Intra-op threads; default: all cores (or the process default, see setSessionDefaults). */
  threads?: number;
  /** Execution provider; default 'cpu' (or the process default). */
  device?: Device;
  /**
   * 'auto' (default): feed initializers of at least FED_TENSOR_BYTES as inputs when
   * all initializers together exceed FEED_THRESHOLD_BYTES; 'always' / 'never'.
   */
  feedWeights?: 'auto' | 'always' | 'never';
}

/** Total initializer bytes above which weights are fed rather than encoded (under the 2 GB protobuf limit). */
export const FEED_THRESHOLD_BYTES = 1 << 30;
/** Initializers at least this large are fed; small ones (shapes, norms) stay in the graph. */
export const FED_TENSOR_BYTES = 4096;

const defaults: { threads?: number; device: Device } = { device: 'cpu' };

/** Process-wide defaults (the CLI sets them from --device / --threads); explicit options win. */
export function setSessionDefaults(d: { threads?: number; device?: Device }): void {
  if (d.threads !== undefined) defaults.threads = d.threads;
  if (d.device !== undefined) defaults.device = d.device;
}

export function sessionDefaults(): { threads?: number; device: Device } {
  return { ...defaults };
}

/** Check --device / --threads values; InputError naming the flag. */
export function checkDeviceFlags(device: string | undefined, threads: number | undefined): { device: Device; threads?: number } {
  const d = (device ?? 'cpu') as Device;
  if (!DEVICES.includes(d)) throw new InputError(`--device ${device}: expected one of ${DEVICES.join(', ')}`);
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 0)) throw new InputError(`--threads ${threads}: must be a non-negative integer (0 = all cores)`);
  if (d === 'cuda') checkCudaInstalled();
  return { device: d, threads };
}

/** The folder holding onnxruntime-node's native binding (and any provider libraries). */
function bindingDir(): string | null {
  const req = createRequire(import.meta.url);
  const pkg = path.dirname(req.resolve('onnxruntime-node/package.json'));
  const dir = path.join(pkg, 'bin', `napi-v${process.versions.napi ?? '6'}`, process.platform, process.arch);
  if (fs.existsSync(dir)) return dir;
  const base = path.join(pkg, 'bin');
  for (const v of fs.existsSync(base) ? fs.readdirSync(base) : []) {
    const d = path.join(base, v, process.platform, process.arch);
    if (fs.existsSync(d)) return d;
  }
  return null;
}

/** InputError unless onnxruntime-node's CUDA provider library is installed. */
export function checkCudaInstalled(): void {
  const dir = bindingDir();
  const lib = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  if (dir && fs.existsSync(path.join(dir, lib))) return;
  throw new InputError(
    `--device cuda: onnxruntime's CUDA provider is not installed (no ${lib} in ${dir ?? 'onnxruntime-node/bin'}); ` +
      `install it with \`npm install onnxruntime-node --onnxruntime-node-install=cuda12\` (needs CUDA 12 and cuDNN 9), or use --device cpu`,
  );
}

function tensorByteLength(t: TensorProto): number {
  return t.rawData?.length ?? 4 * (t.floatData?.length ?? 0);
}

/** A feed holding an initializer's current data, a view of its bytes when aligned (no copy). */
export function tensorFeed(t: TensorProto): ort.Tensor {
  const dims = tensorDims(t);
  const n = dims.reduce((a, d) => a * d, 1);
  const raw = t.rawData && t.rawData.length > 0 ? t.rawData : null;
  if (t.dataType === DataType.FLOAT) {
    const data = raw && raw.byteOffset % 4 === 0 ? new Float32Array(raw.buffer, raw.byteOffset, n) : tensorToFloat32(t);
    return new ort.Tensor('float32', data, dims);
  }
  if (t.dataType === DataType.FLOAT16 && raw) {
    const data = raw.byteOffset % 2 === 0 ? new Uint16Array(raw.buffer, raw.byteOffset, n) : new Uint16Array(raw.slice(0, 2 * n).buffer);
    return new ort.Tensor('float16', data, dims);
  }
  if (t.dataType === DataType.FLOAT16) {
    const f = tensorToFloat32(t);
    const half = new Uint16Array(n);
    for (let i = 0; i < n; i++) half[i] = floatToHalf(f[i]!);
    return new ort.Tensor('float16', half, dims);
  }
  if (t.dataType === DataType.INT64 && raw) {
    const data = raw.byteOffset % 8 === 0 ? new BigInt64Array(raw.buffer, raw.byteOffset, n) : new BigInt64Array(raw.slice().buffer);
    return new ort.Tensor('int64', data, dims);
  }
  throw new Error(`cannot feed initializer ${t.name} of ONNX type ${t.dataType}`);
}

function sessionCreateOptions(opts: SessionOptions): ort.InferenceSession.SessionOptions {
  const device = opts.device ?? defaults.device;
  return {
    intraOpNumThreads: opts.threads ?? defaults.threads ?? 0,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    executionProviders: device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
  };
}

/**
 * The initializers a session should be fed rather than given in the model bytes,
 * per `opts.feedWeights` (see SessionOptions).
 */
export function weightsToFeed(model: ModelProto, mode: SessionOptions['feedWeights'] = 'auto'): string[] {
  if (mode === 'never') return [];
  const inits = model.graph?.initializer ?? [];
  const big = inits.filter((t) => tensorByteLength(t) >= FED_TENSOR_BYTES && (t.dataType === DataType.FLOAT || t.dataType === DataType.FLOAT16));
  if (mode === 'always') return big.map((t) => t.name!);
  const total = inits.reduce((a, t) => a + tensorByteLength(t), 0);
  return total > FEED_THRESHOLD_BYTES ? big.map((t) => t.name!) : [];
}

/** A session whose fed weights are added to every run; it reports only the caller's inputs. */
class FedSession implements ort.InferenceSession {
  readonly inputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  constructor(
    private readonly inner: ort.InferenceSession,
    private readonly fed: Record<string, ort.Tensor>,
  ) {
    this.inputNames = inner.inputNames.filter((n) => !(n in fed));
    this.inputMetadata = inner.inputMetadata.filter((m) => !(m.name in fed));
  }
  get outputNames(): readonly string[] {
    return this.inner.outputNames;
  }
  get outputMetadata(): readonly ort.InferenceSession.ValueMetadata[] {
    return this.inner.outputMetadata;
  }
  run(feeds: ort.InferenceSession.FeedsType, fetchesOrOptions?: ort.InferenceSession.FetchesType | ort.InferenceSession.RunOptions, options?: ort.InferenceSession.RunOptions): Promise<ort.InferenceSession.ReturnType> {
    const all = { ...feeds, ...this.fed };
    return fetchesOrOptions === undefined ? this.inner.run(all) : this.inner.run(all, fetchesOrOptions as ort.InferenceSession.FetchesType, options);
  }
  release(): Promise<void> {
    return this.inner.release();
  }
  startProfiling(): void {
    this.inner.startProfiling();
  }
  endProfiling(): void {
    this.inner.endProfiling();
  }
}

/** onnxruntime's error when a provider cannot start, as one clear line. */
async function createOrt(bytes: Uint8Array, opts: SessionOptions): Promise<ort.InferenceSession> {
  const o = sessionCreateOptions(opts);
  try {
    return await ort.InferenceSession.create(bytes, o);
  } catch (e) {
    if ((opts.device ?? defaults.device) === 'cuda') throw new InputError(`--device cuda: onnxruntime could not start the CUDA provider (${(e as Error).message.split('\n')[0]})`);
    throw e;
  }
}

/**
 * A session for an in-memory model (or model bytes). Large initializers are fed
 * (see the file comment); every initializer must hold its data (no unresolved
 * external data).
 */
export async function createSession(model: ModelProto | Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  if ((opts.device ?? defaults.device) === 'cuda') checkCudaInstalled();
  if (model instanceof Uint8Array) return createOrt(model, opts);
  const fedNames = weightsToFeed(model, opts.feedWeights);
  if (fedNames.length === 0) return createOrt(encodeModel(model), opts);
  const m = cloneModel(model);
  const removed = initializersToInputs(m, fedNames);
  const fed: Record<string, ort.Tensor> = {};
  removed.forEach((t, i) => (fed[fedNames[i]!] = tensorFeed(t)));
  return new FedSession(await createOrt(encodeModel(m), opts), fed);
}

export function f32(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims as number[]);
}

export function i64(data: ArrayLike<number> | BigInt64Array, dims: readonly number[]): ort.Tensor {
  const arr = data instanceof BigInt64Array ? data : BigInt64Array.from(Array.from(data as ArrayLike<number>, (v) => BigInt(v)));
  return new ort.Tensor('int64', arr, dims as number[]);
}
