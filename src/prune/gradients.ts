/**
 * The G terminal: G = 100 * sqrt(sum_n g_n^2) per weight, g_n the gradient of window n's
 * mean next-token cross-entropy on the dense model (GBLM-Pruner / Pruner-Zero). One
 * gradient graph (loss + the prunable weights' gradients) is built for [1, seqlen]
 * and run once per window, so every g_n is exact; squares are summed in float64.
 * float16 models are upcast to float32 for this computation.
 */
import { InputError } from '../errors.ts';
import { DataType, type ModelProto } from '../onnx/proto.ts';
import { appendLoss } from '../onnx/loss.ts';
import { buildGradientGraph, gradName } from '../onnx/autodiff/grad-graph.ts';
import { createSession } from '../onnx/session.ts';
import { hasFloat16, upcastToFloat32 } from '../onnx/autodiff/upcast.ts';
import { tokenFeeds } from './calibration.ts';
import type { PrunableLayer } from './discover.ts';

export interface GradientNormOptions {
  threads?: number;
  /** Called after each window. */
  onProgress?: (done: number, total: number) => void;
}

/** Scale applied to the root-sum-square, as in GBLM-Pruner's released code. */
export const G_SCALE = 100;

/** G of every layer, [out, in] (PyTorch layout), keyed by layer name. */
export async function computeGradientNorms(model: ModelProto, layers: PrunableLayer[], windows: Int32Array[], opts: GradientNormOptions = {}): Promise<Map<string, Float32Array>> {
  checkGradientInputs(layers, windows);
  const initNames = [...new Set(layers.map((l) => l.initializer))];
  // float16 models are differentiated in float32 (G sums squares over many windows).
  const withLoss = appendLoss(hasFloat16(model) ? upcastToFloat32(model) : model);
  const probeFeeds = tokenFeeds(withLoss, [windows[0]!]);
  const gradModel = await buildGradientGraph(withLoss, { loss: 'loss', wrt: initNames, feeds: probeFeeds });
  const session = await createSession(gradModel, { threads: opts.threads });
  const sums = new Map<string, Float64Array>();
  try {
    for (let n = 0; n < windows.length; n++) {
      const feeds = tokenFeeds(withLoss, [windows[n]!]);
      const res = await session.run(Object.fromEntries(session.inputNames.map((k) => [k, feeds[k]!])));
      for (const name of initNames) {
        addSquares(sums, name, res[gradName(name)]!.data as Float32Array);
      }
      opts.onProgress?.(n + 1, windows.length);
    }
  } finally {
    await session.release();
  }
  const out = new Map<string, Float32Array>();
  for (const l of layers) out.set(l.name, gradientNorm(l, sums.get(l.initializer)!));
  return out;
}

/** InputError unless the windows and layers can be differentiated (one length >= 2, float weights). */
export function checkGradientInputs(layers: PrunableLayer[], windows: Int32Array[]): void {
  if (windows.length === 0) throw new InputError('gradients: no calibration windows');
  const seqlen = windows[0]!.length;
  if (seqlen < 2) throw new InputError(`gradients: windows of ${seqlen} token(s) have no next-token target`);
  for (const w of windows) if (w.length !== seqlen) throw new InputError(`gradients: calibration windows differ in length (${w.length} vs ${seqlen})`);
  for (const l of layers) {
    if (l.dataType !== DataType.FLOAT && l.dataType !== DataType.FLOAT16) throw new InputError(`gradients: layer ${l.name} has data type ${l.dataType}; only float32 and float16 models are supported`);
  }
}

/** Add one window's gradient, squared, to the float64 sum kept for `name`. */
export function addSquares(sums: Map<string, Float64Array>, name: string, g: Float32Array): void {
  let acc = sums.get(name);
  if (!acc) sums.set(name, (acc = new Float64Array(g.length)));
  for (let i = 0; i < g.length; i++) acc[i]! += g[i]! * g[i]!;
}

/** G of a layer from its sum of squared per-window gradients (stored layout): G_SCALE * sqrt, in [out, in]. */
export function gradientNorm(l: PrunableLayer, acc: Float64Array): Float32Array {
  const G = new Float32Array(l.out * l.in);
  if (acc.length !== G.length) throw new Error(`gradients: ${l.name}: gradient has ${acc.length} values, expected ${l.out}x${l.in}`);
  if (l.storedTransposed) {
    // stored [in, out] -> [out, in]
    for (let i = 0; i < l.in; i++) for (let o = 0; o < l.out; o++) G[o * l.in + i] = G_SCALE * Math.sqrt(acc[i * l.out + o]!);
  } else {
    for (let k = 0; k < G.length; k++) G[k] = G_SCALE * Math.sqrt(acc[k]!);
  }
  return G;
}
