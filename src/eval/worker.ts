/**
 * A candidate-evaluation worker (run by piscina through worker-entry.mjs). It holds one
 * onnxruntime session of the model with the prunable weights as graph inputs (one
 * intra-op thread), and reads the layer statistics and the fitness tokens from shared
 * memory handed over once in workerData. Tasks:
 *
 *  - `mask`: compile a tree, score every layer, mask the lowest scores per output row (or
 *    per N:M group), return the masks bit-packed in a SharedArrayBuffer and their hash,
 *    the fingerprint under which equal masks share one fitness;
 *  - `ppl`: perplexity of the model pruned by such a packed mask on the first maxTokens
 *    of the fitness tokens (the short and full budgets are prefixes of the same windows);
 *  - `method`: mask and perplexity of a baseline (magnitude, wanda, ...) in the same harness;
 *  - `weights`: perplexity with given weights (SparseGPT's reconstructed layers);
 *  - `dense`: perplexity of the unpruned model.
 *
 * The handler never throws: failures are replies, so a rejected task means the worker died.
 */
import { createHash } from 'node:crypto';
import { threadId, workerData } from 'node:worker_threads';
import { decodeModel } from '../onnx/proto.ts';
import { findInitializer } from '../onnx/graph-edit.ts';
import { tensorToFloat32 } from '../onnx/tensor.ts';
import { PerplexityEvaluator } from './perplexity.ts';
import { compileTree } from '../search-space/compile.ts';
import { validateTree } from '../search-space/validate.ts';
import type { Tree } from '../search-space/tree.ts';
import { maskScores, scoreLayer, ScoreScratch, type LayerArrays, type MaskSpec, type Pattern } from '../prune/score.ts';
import { baselineMethod } from '../prune/baselines.ts';
import type { WorkerReply } from './pool.ts';

/** One prunable layer as workers see it; arrays live in SharedArrayBuffers. */
export interface WorkerLayer {
  name: string;
  initializer: string;
  out: number;
  in: number;
  storedTransposed: boolean;
  /** Signed weights, [out, in]. */
  weight: Float32Array;
  G: Float32Array | null;
  X: Float32Array | null;
}

export interface WorkerInit {
  /** The encoded ONNX model. */
  model: Uint8Array;
  layers: WorkerLayer[];
  /** Fitness tokens (brown:search by default). */
  tokens: Int32Array;
  seqlen: number;
  batchSize?: number;
  sparsity: number;
  pattern: Pattern;
  /** Sparsity of each layer (a layer-wise allocation such as OWL's); absent: `sparsity` everywhere. */
  layerSparsity?: number[];
  /**
   * Fault injection for tests: a shared counter of perplexity tasks and what the N-th does:
   * `crash` exits the worker, `hang` blocks it outside onnxruntime (only the pool's hard
   * timeout ends it), `slow` sleeps past the task's time limit between two batches (the
   * worker's own timeout stops it).
   */
  fault?: { counter: Int32Array; at: number; kind: 'crash' | 'hang' | 'slow' } | null;
}

export type WorkerTask = (
  | { kind: 'mask'; tree: Tree }
  | { kind: 'ppl'; mask: SharedArrayBuffer; maxTokens: number }
  | { kind: 'method'; name: string; seed?: number; maxTokens: number }
  | { kind: 'weights'; weights: Record<string, Float32Array>; maxTokens: number }
  | { kind: 'dense'; maxTokens: number }
) & {
  /** Set by the pool: the worker stops the task between batches once this much time has passed (0 = never). */
  timeoutMs?: number;
};

/** Thrown between batches when a task is past its deadline. */
class TaskTimeout extends Error {}

export interface MaskReply {
  fingerprint: string;
  /** Bit-packed masks of all layers (1 = pruned), layer after layer, each starting on a byte. */
  mask: SharedArrayBuffer;
  nanCount: number;
  /** A layer whose scores are NaN for every weight (then the tree is invalid). */
  allNaN: string | null;
  worker: number;
  seconds: number;
}

export interface PplReply {
  ppl: number;
  nll: number;
  tokens: number;
  worker: number;
  seconds: number;
  fingerprint?: string;
}

/** Byte offset of each layer's packed mask and the total size. */
export function maskLayout(layers: readonly { out: number; in: number }[]): { offsets: number[]; bytes: number } {
  const offsets: number[] = [];
  let o = 0;
  for (const l of layers) {
    offsets.push(o);
    o += Math.ceil((l.out * l.in) / 8);
  }
  return { offsets, bytes: o };
}

/** Pack a 0/1 mask into bits (bit i%8 of byte i/8). */
export function packMask(mask: Uint8Array, into: Uint8Array): void {
  into.fill(0);
  for (let i = 0; i < mask.length; i++) if (mask[i]) into[i >> 3]! |= 1 << (i & 7);
}

const init = workerData as WorkerInit;
const layout = maskLayout(init.layers);
const model = decodeModel(init.model);
/** Each layer's weights in the initializer's own stored layout, for the dense model. */
const stored = new Map<string, Float32Array>();
for (const l of init.layers) {
  const t = findInitializer(model, l.initializer);
  if (!t) throw new Error(`worker: no initializer ${l.initializer}`);
  stored.set(l.initializer, tensorToFloat32(t));
}
const evaluator = await PerplexityEvaluator.create(model, { replaceable: init.layers.map((l) => l.initializer), threads: 1 });
/** Pruned-weight buffers, one per layer, reused across tasks. */
const pruned = new Map<string, Float32Array>(init.layers.map((l) => [l.initializer, new Float32Array(l.out * l.in)]));
const scratch = new ScoreScratch();
const spec: MaskSpec = { sparsity: init.sparsity, pattern: init.pattern, grouping: 'row' };

function layerArrays(l: WorkerLayer): LayerArrays {
  return { rows: l.out, cols: l.in, weight: l.weight, X: l.X, G: l.G };
}

type Scorer = (layer: LayerArrays, l: WorkerLayer) => Float32Array;

/** Score and mask every layer; the packed masks go to a new SharedArrayBuffer. */
function masks(score: Scorer, grouping: 'row' | 'layer'): Omit<MaskReply, 'worker' | 'seconds'> {
  const sab = new SharedArrayBuffer(layout.bytes);
  const bits = new Uint8Array(sab);
  const hash = createHash('sha256');
  let nanCount = 0;
  let allNaN: string | null = null;
  init.layers.forEach((l, i) => {
    const arrays = layerArrays(l);
    const scores = score(arrays, l);
    const res = maskScores(scores, l.out, l.in, { ...spec, grouping, sparsity: init.layerSparsity?.[i] ?? spec.sparsity });
    nanCount += res.nanCount;
    if (res.nanCount === l.out * l.in && allNaN === null) allNaN = l.name;
    const dst = bits.subarray(layout.offsets[i]!, layout.offsets[i]! + Math.ceil((l.out * l.in) / 8));
    packMask(res.mask, dst);
    hash.update(dst);
  });
  return { fingerprint: hash.digest('hex').slice(0, 32), mask: sab, nanCount, allNaN };
}

/** Pruned weights in stored layout from the packed masks. */
function prunedWeights(mask: SharedArrayBuffer): Record<string, Float32Array> {
  const bits = new Uint8Array(mask);
  const out: Record<string, Float32Array> = {};
  init.layers.forEach((l, i) => {
    const w = l.weight;
    const dst = pruned.get(l.initializer)!;
    const off = layout.offsets[i]!;
    const rows = l.out;
    const cols = l.in;
    if (l.storedTransposed) {
      for (let r = 0; r < rows; r++) {
        const ro = r * cols;
        for (let c = 0; c < cols; c++) {
          const k = ro + c;
          dst[c * rows + r] = (bits[off + (k >> 3)]! >> (k & 7)) & 1 ? 0 : w[k]!;
        }
      }
    } else {
      for (let k = 0; k < rows * cols; k++) dst[k] = (bits[off + (k >> 3)]! >> (k & 7)) & 1 ? 0 : w[k]!;
    }
    out[l.initializer] = dst;
  });
  return out;
}

async function ppl(weights: Record<string, Float32Array>, maxTokens: number, deadline: { at: number; ms: number }): Promise<Omit<PplReply, 'seconds'>> {
  const f = init.fault;
  let slow = false;
  if (f) {
    const n = Atomics.add(f.counter, 0, 1) + 1;
    if (n === f.at) {
      if (f.kind === 'crash') process.exit(70);
      if (f.kind === 'hang') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      slow = true;
    }
  }
  const check = (): void => {
    if (slow) {
      slow = false;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(60_000, 1.5 * deadline.ms + 10));
    }
    if (performance.now() > deadline.at) throw new TaskTimeout(`timed out: over the ${(deadline.ms / 1000).toFixed(1)} s limit per task`);
  };
  const r = await evaluator.evaluate(init.tokens, { seqlen: init.seqlen, maxTokens, batchSize: init.batchSize, weights, onProgress: check });
  return { ppl: r.ppl, nll: r.nll, tokens: r.tokens, worker: threadId };
}

async function handle(task: WorkerTask): Promise<unknown> {
  const t0 = performance.now();
  const deadline = { at: task.timeoutMs ? t0 + task.timeoutMs : Infinity, ms: task.timeoutMs ?? 0 };
  const secs = (): number => (performance.now() - t0) / 1000;
  switch (task.kind) {
    case 'mask': {
      const problem = validateTree(task.tree);
      if (problem) throw new Error(`invalid tree: ${problem}`);
      const kernel = compileTree(task.tree);
      const m = masks((arrays) => scoreLayer(kernel, arrays, scratch), 'row');
      return { ...m, worker: threadId, seconds: secs() } satisfies MaskReply;
    }
    case 'ppl':
      return { ...(await ppl(prunedWeights(task.mask), task.maxTokens, deadline)), seconds: secs() } satisfies PplReply;
    case 'method': {
      const method = baselineMethod(task.name, { seed: task.seed });
      if (method.kind !== 'score' || !method.score) throw new Error(`method ${task.name} is not a scoring method; send its weights`);
      const m = masks((arrays, l) => method.score!(arrays, { name: l.name, scratch }), method.grouping);
      const r = await ppl(prunedWeights(m.mask), task.maxTokens, deadline);
      return { ...r, fingerprint: m.fingerprint, seconds: secs() } satisfies PplReply;
    }
    case 'weights': {
      const w: Record<string, Float32Array> = {};
      for (const l of init.layers) w[l.initializer] = task.weights[l.initializer] ?? stored.get(l.initializer)!;
      return { ...(await ppl(w, task.maxTokens, deadline)), seconds: secs() } satisfies PplReply;
    }
    case 'dense':
      return { ...(await ppl(Object.fromEntries(stored), task.maxTokens, deadline)), seconds: secs() } satisfies PplReply;
  }
}

export default async function run(task: WorkerTask): Promise<WorkerReply<unknown>> {
  try {
    return { ok: true, value: await handle(task) };
  } catch (e) {
    const error = ((e as Error).message ?? String(e)).split('\n')[0]!.slice(0, 500);
    return e instanceof TaskTimeout ? { ok: false, error, timeout: true } : { ok: false, error };
  }
}

