/**
 * What evaluates candidates, wherever it runs (a thread of the local pool, or a
 * `symprune worker` process fed by the queue): one onnxruntime session of the model with the
 * prunable weights as graph inputs, the layer statistics and the fitness tokens in memory.
 * Tasks are plain JSON:
 *
 *  - `mask`: compile a tree, score every layer, mask the lowest scores per output row (or per
 *    N:M group); answer with the masks' hash, the fingerprint under which equal masks share
 *    one fitness. The masks stay in this worker's cache under that fingerprint;
 *  - `ppl`: perplexity of the model pruned by a tree's masks on the first maxTokens of the
 *    fitness tokens (the short and full budgets are prefixes of the same windows). The masks
 *    come from the cache, or are computed again and checked against the fingerprint;
 *  - `method`: mask and perplexity of a baseline (magnitude, wanda, ...) in the same harness;
 *  - `weights`: perplexity with given weights (SparseGPT's reconstructed layers; local only);
 *  - `dense`: perplexity of the unpruned model.
 * `mask` and `ppl` may carry their own sparsity per layer (a searched allocation's candidate).
 *
 * `run` never throws: failures are replies, so a rejected task means the worker died.
 */
import { createHash } from 'node:crypto';
import { findInitializer } from '../onnx/graph-edit.ts';
import type { ModelProto } from '../onnx/proto.ts';
import { tensorToFloat32 } from '../onnx/tensor.ts';
import { PerplexityEvaluator } from './perplexity.ts';
import { compileTree } from '../search-space/compile.ts';
import { validateTree } from '../search-space/validate.ts';
import type { Tree } from '../search-space/tree.ts';
import { maskScores, scoreLayer, ScoreScratch, type LayerArrays, type MaskSpec, type Pattern } from '../prune/score.ts';
import { baselineMethod } from '../prune/baselines.ts';

/** One prunable layer as a worker sees it. */
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

/** A job's data, loaded. */
export interface LoadedJob {
  model: ModelProto;
  layers: WorkerLayer[];
  /** Fitness tokens. */
  tokens: Int32Array;
  seqlen: number;
  batchSize?: number;
  sparsity: number;
  pattern: Pattern;
  /** Sparsity of each layer (a layer-wise allocation such as OWL's); absent: `sparsity` everywhere. */
  layerSparsity?: number[];
  /** A search over several settings: each one's sparsity, pattern and layer sparsity (tasks name one by index); absent: the one above. */
  settings?: MaskSetting[];
}

/** What masks are made at: a sparsity and pattern, and optionally a sparsity per layer. */
export interface MaskSetting {
  sparsity: number;
  pattern: Pattern;
  layerSparsity?: number[];
}

/**
 * Fault injection for tests: a counter of perplexity tasks (shared between the threads of a
 * pool) and what the N-th does: `crash` exits the worker, `hang` blocks it outside
 * onnxruntime (only a hard timeout or a kill ends it), `overtime` runs as if past its time
 * limit (the worker's own timeout stops it after the first batch). A line on stderr says
 * when a fault fires, so a test can act on it without timing anything.
 */
export type WorkerFault = { counter: Int32Array; at: number; kind: 'crash' | 'hang' | 'overtime' };

export type WorkerTask = (
  | { kind: 'mask'; tree: Tree; setting?: number; layerSparsity?: number[] }
  | { kind: 'ppl'; tree: Tree; fingerprint: string; maxTokens: number; setting?: number; layerSparsity?: number[] }
  | { kind: 'method'; name: string; seed?: number; maxTokens: number; setting?: number }
  | { kind: 'weights'; weights: Record<string, Float32Array>; maxTokens: number }
  | { kind: 'dense'; maxTokens: number }
) & {
  /** The worker stops the task between batches once this much time has passed (0 = never). */
  timeoutMs?: number;
  /** What the task is for (run, candidate, budget): a queue's idempotency key. */
  key?: string;
};

/** What a worker returns: it never throws; `timeout` marks a task it stopped at its deadline. */
export type WorkerReply<T> = { ok: true; value: T } | { ok: false; error: string; timeout?: boolean };

export interface MaskReply {
  fingerprint: string;
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

/** Thrown between batches when a task is past its deadline. */
class TaskTimeout extends Error {}

/** Bit-packed masks of all layers (1 = pruned), layer after layer, each starting on a byte. */
interface Masks {
  fingerprint: string;
  bits: Uint8Array;
  nanCount: number;
  allNaN: string | null;
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

/** Masks kept per worker: enough for a step's batch (each candidate is masked, then evaluated twice at most). */
const MASK_CACHE = 64;

export class CandidateWorker {
  private readonly layout: { offsets: number[]; bytes: number };
  /** Pruned-weight buffers, one per layer, reused across tasks. */
  private readonly pruned: Map<string, Float32Array>;
  private readonly scratch = new ScoreScratch();
  /** Masks by fingerprint, oldest first. */
  private readonly cache = new Map<string, Masks>();

  private constructor(
    private readonly job: LoadedJob,
    private readonly evaluator: PerplexityEvaluator,
    /** Each layer's weights in the initializer's own stored layout, for the dense model. */
    private readonly stored: Map<string, Float32Array>,
    private readonly id: number,
    private readonly fault: WorkerFault | null,
  ) {
    this.layout = maskLayout(job.layers);
    this.pruned = new Map(job.layers.map((l) => [l.initializer, new Float32Array(l.out * l.in)]));
  }

  /** The setting a task names (its index among the job's settings), or the job's one setting. */
  private setting(index: number | undefined): MaskSetting {
    if (index === undefined) return this.job;
    const s = this.job.settings?.[index];
    if (!s) throw new Error(`setting ${index}: this job has ${this.job.settings?.length ?? 1} setting(s)`);
    return s;
  }

  static async create(job: LoadedJob, opts: { id: number; threads?: number; fault?: WorkerFault | null }): Promise<CandidateWorker> {
    const stored = new Map<string, Float32Array>();
    for (const l of job.layers) {
      const t = findInitializer(job.model, l.initializer);
      if (!t) throw new Error(`worker: no initializer ${l.initializer}`);
      stored.set(l.initializer, tensorToFloat32(t));
    }
    const evaluator = await PerplexityEvaluator.create(job.model, { replaceable: job.layers.map((l) => l.initializer), threads: opts.threads ?? 1 });
    return new CandidateWorker(job, evaluator, stored, opts.id, opts.fault ?? null);
  }

  async run(task: WorkerTask): Promise<WorkerReply<unknown>> {
    try {
      return { ok: true, value: await this.handle(task) };
    } catch (e) {
      const error = ((e as Error).message ?? String(e)).split('\n')[0]!.slice(0, 500);
      return e instanceof TaskTimeout ? { ok: false, error, timeout: true } : { ok: false, error };
    }
  }

  private async handle(task: WorkerTask): Promise<MaskReply | PplReply> {
    const t0 = performance.now();
    const deadline = { at: task.timeoutMs ? t0 + task.timeoutMs : Infinity, ms: task.timeoutMs ?? 0 };
    const secs = (): number => (performance.now() - t0) / 1000;
    switch (task.kind) {
      case 'mask': {
        const m = this.treeMasks(task.tree, this.setting(task.setting), task.layerSparsity);
        return { fingerprint: m.fingerprint, nanCount: m.nanCount, allNaN: m.allNaN, worker: this.id, seconds: secs() };
      }
      case 'ppl': {
        const m = this.cache.get(task.fingerprint) ?? this.treeMasks(task.tree, this.setting(task.setting), task.layerSparsity);
        if (m.fingerprint !== task.fingerprint) throw new Error(`the tree's masks here have fingerprint ${m.fingerprint}, not ${task.fingerprint}: this worker's data differ from the coordinator's`);
        return { ...(await this.ppl(this.prunedWeights(m.bits), task.maxTokens, deadline)), fingerprint: m.fingerprint, seconds: secs() };
      }
      case 'method': {
        const method = baselineMethod(task.name, { seed: task.seed });
        if (method.kind !== 'score' || !method.score) throw new Error(`method ${task.name} is not a scoring method; send its weights`);
        const m = this.masks((arrays, l) => method.score!(arrays, { name: l.name, scratch: this.scratch }), method.grouping, this.setting(task.setting));
        const r = await this.ppl(this.prunedWeights(m.bits), task.maxTokens, deadline);
        return { ...r, fingerprint: m.fingerprint, seconds: secs() };
      }
      case 'weights': {
        const w: Record<string, Float32Array> = {};
        for (const l of this.job.layers) w[l.initializer] = task.weights[l.initializer] ?? this.stored.get(l.initializer)!;
        return { ...(await this.ppl(w, task.maxTokens, deadline)), seconds: secs() };
      }
      case 'dense':
        return { ...(await this.ppl(Object.fromEntries(this.stored), task.maxTokens, deadline)), seconds: secs() };
    }
  }

  /** A tree's masks, computed once and kept under their fingerprint. */
  private treeMasks(tree: Tree, setting: MaskSetting, layerSparsity?: number[]): Masks {
    const problem = validateTree(tree);
    if (problem) throw new Error(`invalid tree: ${problem}`);
    if (layerSparsity && layerSparsity.length !== this.job.layers.length) throw new Error(`the task has ${layerSparsity.length} layer sparsities for ${this.job.layers.length} layers`);
    const kernel = compileTree(tree);
    const m = this.masks((arrays) => scoreLayer(kernel, arrays, this.scratch), 'row', layerSparsity ? { ...setting, layerSparsity } : setting);
    this.cache.delete(m.fingerprint);
    this.cache.set(m.fingerprint, m);
    if (this.cache.size > MASK_CACHE) this.cache.delete(this.cache.keys().next().value!);
    return m;
  }

  /** Score and mask every layer. */
  private masks(score: (layer: LayerArrays, l: WorkerLayer) => Float32Array, grouping: 'row' | 'layer', setting: MaskSetting): Masks {
    const spec: MaskSpec = { sparsity: setting.sparsity, pattern: setting.pattern, grouping };
    const bits = new Uint8Array(this.layout.bytes);
    const hash = createHash('sha256');
    let nanCount = 0;
    let allNaN: string | null = null;
    this.job.layers.forEach((l, i) => {
      const scores = score({ rows: l.out, cols: l.in, weight: l.weight, X: l.X, G: l.G }, l);
      const res = maskScores(scores, l.out, l.in, { ...spec, sparsity: setting.layerSparsity?.[i] ?? spec.sparsity });
      nanCount += res.nanCount;
      if (res.nanCount === l.out * l.in && allNaN === null) allNaN = l.name;
      const dst = bits.subarray(this.layout.offsets[i]!, this.layout.offsets[i]! + Math.ceil((l.out * l.in) / 8));
      packMask(res.mask, dst);
      hash.update(dst);
    });
    return { fingerprint: hash.digest('hex').slice(0, 32), bits, nanCount, allNaN };
  }

  /** Pruned weights in stored layout from the packed masks. */
  private prunedWeights(bits: Uint8Array): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    this.job.layers.forEach((l, i) => {
      const w = l.weight;
      const dst = this.pruned.get(l.initializer)!;
      const off = this.layout.offsets[i]!;
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

  private async ppl(weights: Record<string, Float32Array>, maxTokens: number, deadline: { at: number; ms: number }): Promise<Omit<PplReply, 'seconds'>> {
    const f = this.fault;
    let overtime = false;
    if (f) {
      const n = Atomics.add(f.counter, 0, 1) + 1;
      if (n === f.at) {
        process.stderr.write(`symprune worker: fault ${f.kind} at perplexity task ${n}\n`);
        if (f.kind === 'crash') process.exit(70);
        if (f.kind === 'hang') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
        overtime = true;
      }
    }
    const check = (): void => {
      if (overtime || performance.now() > deadline.at) throw new TaskTimeout(`timed out: over the ${(deadline.ms / 1000).toFixed(1)} s limit per task`);
    };
    const r = await this.evaluator.evaluate(this.job.tokens, { seqlen: this.job.seqlen, maxTokens, batchSize: this.job.batchSize, weights, onProgress: check });
    return { ppl: r.ppl, nll: r.nll, tokens: r.tokens, worker: this.id };
  }
}
