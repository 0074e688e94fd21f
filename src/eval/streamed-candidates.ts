/**
 * Candidate evaluation for a model that does not fit in memory (the search's memory plan
 * says so): the same tasks as the in-memory worker (candidate-worker.ts) answered with one
 * decoder block's weights in memory at a time, in this process, one task at a time.
 *
 *  - `mask`: each layer's W is read from the model, its G and X from the statistics file,
 *    it is scored and masked, and the packed mask goes into the same hash as the in-memory
 *    worker's, layer after layer in the same order: the same fingerprint, so runs compare
 *    and duplicate masks are caught as they are in memory. The packed masks are parked in a
 *    scratch file under their fingerprint for the perplexity tasks that follow.
 *  - `ppl`: the fitness windows go through the prelude, each block with its layers masked
 *    (masks from the scratch file, or computed again and checked against the fingerprint)
 *    and the tail (streamedPerplexity: the whole-model evaluator's figures);
 *  - `method`: a scoring baseline masked and evaluated in the same pass; `dense`: unpruned.
 *  - `weights` (SparseGPT's reconstructed layers) would need every layer in memory: the
 *    search evaluates that baseline itself when it runs block by block (baselines.ts).
 *
 * Time limits: a task past its limit stops between batches of windows or between layers
 * (status `timeout`); there is no thread to terminate, so a task stuck outside onnxruntime
 * is not cut short.
 */
import { createHash, type Hash } from 'node:crypto';
import type { TensorProto } from '../onnx/proto.ts';
import { planSegments, type SegmentSpec } from '../onnx/block-split.ts';
import type { WeightSource } from '../onnx/weight-source.ts';
import { readLayerWeight, viewOf, writeLayerWeight, type PrunableLayer } from '../prune/discover.ts';
import type { LayerStatsFile } from '../prune/stats-file.ts';
import { ScratchFloats } from '../prune/scratch-floats.ts';
import { maskScores, scoreLayer, ScoreScratch, type LayerArrays, type MaskSpec } from '../prune/score.ts';
import { baselineMethod } from '../prune/baselines.ts';
import { compileTree } from '../search-space/compile.ts';
import { validateTree } from '../search-space/validate.ts';
import type { Tree } from '../search-space/tree.ts';
import { packMask, type MaskReply, type MaskSetting, type PplReply, type WorkerTask } from './candidate-worker.ts';
import { streamedPerplexity } from './perplexity-stream.ts';
import type { TaskOutcome, TaskRunner } from './task-runner.ts';

export interface StreamedJob {
  source: WeightSource;
  /** Prunable layers in the order the fingerprint hashes them (the in-memory worker's). */
  layers: PrunableLayer[];
  /** G and X of every layer, read one layer at a time. */
  stats: LayerStatsFile;
  /** Fitness tokens. */
  tokens: Int32Array;
  seqlen: number;
  /** The run's settings; a task names one by index (none: the first). */
  settings: MaskSetting[];
  /** onnxruntime intra-op threads. */
  threads?: number;
  /** Windows per session run. */
  batchSize?: number;
  /** Masks sets parked before the scratch file starts afresh (default 16: a step's batch is a few candidates). */
  maskSets?: number;
}

/** Thrown between batches or layers once a task is past its time limit. */
class TaskTimeout extends Error {}

/** Scores of one layer (a compiled tree, or a baseline's scorer). */
type Scorer = (arrays: LayerArrays, l: PrunableLayer) => Float32Array;

/** Masks sets parked before the scratch file starts afresh (a step's batch is a few candidates; each set is its model's weights in bits). */
const MASK_SETS = 16;

/** Whether a tree reads G (else its layers' G is not read from disk). */
export function readsG(t: Tree): boolean {
  return t.op === 'G' || t.args.some(readsG);
}

export class StreamedCandidates implements TaskRunner {
  readonly parallelism = 1;
  /** Whole weight sets are not sent here (see the file comment). */
  readonly local = false;
  private timeoutMs = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly scratch = new ScoreScratch();
  private masks: ScratchFloats | null = null;
  private maskSets = 0;
  /** The parked masks set of each fingerprint. */
  private readonly maskSetOf = new Map<string, number>();
  /** Layer indices of each segment (block index; the tail is `blocks`). */
  private readonly bySegment = new Map<number, number[]>();
  /** Whether visiting the blocks in order visits the layers in fingerprint order (then a recomputed fingerprint is checked). */
  private readonly blockOrder: boolean;

  constructor(private readonly job: StreamedJob) {
    const blocks = planSegments(job.source.model).blocks;
    job.layers.forEach((l, i) => {
      const seg = l.block < 0 ? blocks : l.block;
      const list = this.bySegment.get(seg) ?? [];
      list.push(i);
      this.bySegment.set(seg, list);
    });
    const visit = [...this.bySegment.keys()].sort((a, b) => a - b).flatMap((k) => this.bySegment.get(k)!);
    this.blockOrder = visit.every((v, i) => v === i);
  }

  run<T>(task: object): Promise<TaskOutcome<T>> {
    // One task at a time: each holds a block of the model and the windows' hidden states.
    const next = this.queue.then(() => this.runNow<T>(task as WorkerTask));
    this.queue = next.catch(() => {});
    return next;
  }

  setTaskTimeout(ms: number): void {
    this.timeoutMs = ms;
  }

  async close(): Promise<void> {
    await this.queue;
    this.masks?.close();
    this.masks = null;
    this.job.stats.close();
    await this.job.source.close();
  }

  private async runNow<T>(task: WorkerTask): Promise<TaskOutcome<T>> {
    const t0 = performance.now();
    const limit = task.timeoutMs ?? this.timeoutMs;
    const deadline = limit > 0 ? t0 + limit : Infinity;
    const check = (): void => {
      if (performance.now() > deadline) throw new TaskTimeout(`timed out: over the ${(limit / 1000).toFixed(1)} s limit per task`);
    };
    try {
      const value = (await this.handle(task, check, t0)) as T;
      return { status: 'ok', value, seconds: (performance.now() - t0) / 1000 };
    } catch (e) {
      const error = ((e as Error).message ?? String(e)).split('\n')[0]!.slice(0, 500);
      return { status: e instanceof TaskTimeout ? 'timeout' : 'error', error, seconds: (performance.now() - t0) / 1000 };
    }
  }

  private async handle(task: WorkerTask, check: () => void, t0: number): Promise<MaskReply | PplReply> {
    const secs = (): number => (performance.now() - t0) / 1000;
    switch (task.kind) {
      case 'mask': {
        const { scorer, needG } = this.treeScorer(task.tree);
        const spec = this.maskSetting(task.setting, task.layerSparsity);
        const m = await this.maskAll(scorer, 'row', spec, needG, check);
        return { fingerprint: m.fingerprint, nanCount: m.nanCount, allNaN: m.allNaN, worker: 0, seconds: secs() };
      }
      case 'ppl': {
        const { scorer, needG } = this.treeScorer(task.tree);
        const spec = this.maskSetting(task.setting, task.layerSparsity);
        const set = this.maskSetOf.get(task.fingerprint) ?? null;
        const r = await this.prunedPerplexity(task.maxTokens, check, { scorer, grouping: 'row', spec, needG, cached: set });
        if (set === null && r.fingerprint !== null && r.fingerprint !== task.fingerprint)
          throw new Error(`the tree's masks here have fingerprint ${r.fingerprint}, not ${task.fingerprint}: this evaluator's data differ from the coordinator's`);
        return { ...r.ppl, fingerprint: task.fingerprint, seconds: secs() };
      }
      case 'method': {
        const method = baselineMethod(task.name, { seed: task.seed });
        if (method.kind !== 'score' || !method.score) throw new Error(`method ${task.name} is not a scoring method; it is evaluated by the search itself when the model runs block by block`);
        const scorer: Scorer = (arrays, l) => method.score!(arrays, { name: l.name, scratch: this.scratch });
        const r = await this.prunedPerplexity(task.maxTokens, check, { scorer, grouping: method.grouping, spec: this.maskSetting(task.setting), needG: method.needs.G, cached: null });
        return { ...r.ppl, ...(r.fingerprint ? { fingerprint: r.fingerprint } : {}), seconds: secs() };
      }
      case 'dense':
        return { ...(await this.perplexity(task.maxTokens, check)), seconds: secs() };
      case 'weights':
        throw new Error('weights tasks need the whole model in memory; a search run block by block evaluates SparseGPT itself');
    }
  }

  private maskSetting(index: number | undefined, layerSparsity?: number[]): MaskSetting {
    const s = this.job.settings[index ?? 0];
    if (!s) throw new Error(`setting ${index}: this job has ${this.job.settings.length} setting(s)`);
    if (layerSparsity && layerSparsity.length !== this.job.layers.length) throw new Error(`the task has ${layerSparsity.length} layer sparsities for ${this.job.layers.length} layers`);
    return layerSparsity ? { ...s, layerSparsity } : s;
  }

  private treeScorer(tree: Tree): { scorer: Scorer; needG: boolean } {
    const problem = validateTree(tree);
    if (problem) throw new Error(`invalid tree: ${problem}`);
    const kernel = compileTree(tree);
    return { scorer: (arrays) => scoreLayer(kernel, arrays, this.scratch), needG: readsG(tree) };
  }

  /** One layer's packed mask (1 = pruned) from its weights [out, in]. */
  private layerMask(i: number, w: Float32Array, scorer: Scorer, grouping: 'row' | 'layer', setting: MaskSetting, needG: boolean): { bits: Uint8Array; nanCount: number } {
    const l = this.job.layers[i]!;
    const st = this.job.stats.get(l.name, { G: needG });
    const scores = scorer({ rows: l.out, cols: l.in, weight: w, X: st.X, G: st.G }, l);
    const spec: MaskSpec = { sparsity: setting.layerSparsity?.[i] ?? setting.sparsity, pattern: setting.pattern, grouping };
    const res = maskScores(scores, l.out, l.in, spec);
    // Rounded up to whole floats, so the packed bytes park in the scratch file as they are.
    const bits = new Uint8Array(4 * Math.ceil(Math.ceil((l.out * l.in) / 8) / 4));
    packMask(res.mask, bits.subarray(0, Math.ceil((l.out * l.in) / 8)));
    return { bits, nanCount: res.nanCount };
  }

  private async layerWeight(l: PrunableLayer): Promise<Float32Array> {
    return readLayerWeight(viewOf(await this.job.source.resolve([l.initializer])), l);
  }

  /** Every layer's mask, hashed in the in-memory worker's order and parked (one layer in memory at a time) under the fingerprint. */
  private async maskAll(scorer: Scorer, grouping: 'row' | 'layer', setting: MaskSetting, needG: boolean, check: () => void): Promise<{ fingerprint: string; nanCount: number; allNaN: string | null }> {
    const hash = createHash('sha256');
    const set = this.newMaskSet();
    let nanCount = 0;
    let allNaN: string | null = null;
    for (const [i, l] of this.job.layers.entries()) {
      check();
      const m = this.layerMask(i, await this.layerWeight(l), scorer, grouping, setting, needG);
      nanCount += m.nanCount;
      if (m.nanCount === l.out * l.in && allNaN === null) allNaN = l.name;
      hash.update(m.bits.subarray(0, Math.ceil((l.out * l.in) / 8)));
      this.masks!.put(`${set}/${i}`, new Float32Array(m.bits.buffer, m.bits.byteOffset, m.bits.byteLength / 4));
    }
    const fingerprint = hash.digest('hex').slice(0, 32);
    this.maskSetOf.set(fingerprint, set);
    return { fingerprint, nanCount, allNaN };
  }

  /** A key for the next masks set in the scratch file (started afresh every MASK_SETS sets, so it stays small). */
  private newMaskSet(): number {
    if (!this.masks || this.maskSets >= (this.job.maskSets ?? MASK_SETS)) {
      this.masks?.close();
      this.masks = ScratchFloats.open();
      this.maskSets = 0;
      this.maskSetOf.clear();
    }
    return this.maskSets++;
  }

  /** Layer i's packed mask of a parked set. */
  private parked(set: number, i: number): Uint8Array {
    const f = this.masks!.get(`${set}/${i}`);
    return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
  }

  /**
   * Perplexity of the model pruned by masks (parked under `cached`, or computed block by
   * block from the scorer); the fingerprint of masks computed here, when checkable.
   */
  private async prunedPerplexity(
    maxTokens: number,
    check: () => void,
    m: { scorer: Scorer; grouping: 'row' | 'layer'; spec: MaskSetting; needG: boolean; cached: number | null },
  ): Promise<{ ppl: Omit<PplReply, 'seconds'>; fingerprint: string | null }> {
    const hash: Hash | null = m.cached !== null || !this.blockOrder ? null : createHash('sha256');
    const tensorsFor = async (seg: SegmentSpec): Promise<TensorProto[] | undefined> => {
      const idx = this.bySegment.get(seg.index);
      if (!idx || seg.kind === 'prelude') return undefined;
      // Copies of the layers' tensors: the source's own objects (an in-memory model) stay dense.
      const names = new Set(idx.map((i) => this.job.layers[i]!.initializer));
      const tensors = (await this.job.source.resolve(seg.initializers)).map((t) => (names.has(t.name!) ? { ...t } : t));
      const view = viewOf(tensors);
      for (const i of idx) {
        check();
        const l = this.job.layers[i]!;
        const w = readLayerWeight(view, l);
        const packed = m.cached !== null ? this.parked(m.cached, i) : this.layerMask(i, w, m.scorer, m.grouping, m.spec, m.needG).bits;
        hash?.update(packed.subarray(0, Math.ceil((l.out * l.in) / 8)));
        for (let k = 0; k < w.length; k++) if ((packed[k >> 3]! >> (k & 7)) & 1) w[k] = 0;
        writeLayerWeight(view, l, w);
      }
      return tensors;
    };
    const ppl = await this.perplexity(maxTokens, check, tensorsFor);
    return { ppl, fingerprint: hash ? hash.digest('hex').slice(0, 32) : null };
  }

  private async perplexity(maxTokens: number, check: () => void, tensorsFor?: (s: SegmentSpec) => Promise<TensorProto[] | undefined>): Promise<Omit<PplReply, 'seconds'>> {
    const r = await streamedPerplexity(this.job.source, this.job.tokens, { seqlen: this.job.seqlen, maxTokens, threads: this.job.threads, batchSize: this.job.batchSize, tensorsFor, onBatch: check });
    return { ppl: r.ppl, nll: r.nll, tokens: r.tokens, worker: 0 };
  }
}
