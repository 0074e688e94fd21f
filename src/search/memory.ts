/**
 * What a search holds in memory, decided before any work. In memory, the coordinator keeps
 * the whole model and each local worker thread its own copy, handed over in one buffer
 * (at most 4 GiB). A model for which that does not fit --max-memory (or the buffer) is
 * searched block by block instead: one evaluator in this process holding one decoder block
 * at a time (src/eval/streamed-candidates.ts). Only what does not fit even then is refused,
 * with its figure (streamedSearchBytes).
 */
import { InputError } from '../errors.ts';
import { float32WeightBytes, MAX_MODEL_BUFFER } from '../eval/job.ts';
import { resolveModel } from '../model/load.ts';
import { planSegments } from '../onnx/block-split.ts';
import { tensorDims } from '../onnx/tensor.ts';
import type { WeightSource } from '../onnx/weight-source.ts';
import type { PrunableLayer } from '../prune/discover.ts';
import { modelVocabSize } from '../prune/calibration-windows.ts';

/**
 * Rough bytes for `threads` local workers, W the float32 weights: the coordinator holds the model,
 * G and the workers' shared copy of the prunable weights (3 W); each thread its decoded model, the
 * dense and the pruned weights it feeds, and onnxruntime's copy of the rest (4 W).
 */
export function searchMemoryBytes(weightBytes: number, threads: number): number {
  return (3 + 4 * threads) * weightBytes;
}

/** How a search holds its model: `threads` local worker threads with the model in memory, or block by block. */
export type SearchMemoryPlan = { kind: 'memory'; threads: number } | { kind: 'streamed'; weights: number; why: string };

export const gib = (b: number): string => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);

/**
 * The plan for a search on `modelPath` with `threads` local worker threads (fewer when fewer
 * fit `maxMemory`, with a line in `log`). With a job queue the workers hold the model whole
 * wherever they run, so a model over the budget is refused rather than streamed.
 */
export async function planSearchMemory(
  modelPath: string,
  o: { threads: number; maxMemory: number; queue: boolean; flags: { workers: string }; log?: (l: string) => void },
): Promise<SearchMemoryPlan> {
  const weights = await float32WeightBytes(resolveModel(modelPath));
  const fit = (t: number): boolean => weights <= MAX_MODEL_BUFFER && searchMemoryBytes(weights, t) <= o.maxMemory;
  if (o.queue) {
    if (weights > MAX_MODEL_BUFFER)
      throw new InputError(`search --queue hands the whole model to its workers in one buffer, and ${modelPath} has ${gib(weights)} of float32 weights, over the 4 GiB one buffer holds; search without --queue (block by block, in this process)`);
    const need = searchMemoryBytes(weights, o.threads);
    if (need > o.maxMemory)
      throw new InputError(`search --queue keeps the model in memory, about ${gib(need)} with ${o.threads} local worker thread${o.threads === 1 ? '' : 's'} (${gib(weights)} of float32 weights), over --max-memory ${gib(o.maxMemory)}; use fewer ${o.flags.workers}, search without --queue (block by block), or raise --max-memory where the RAM is there`);
    return { kind: 'memory', threads: o.threads };
  }
  if (fit(o.threads)) return { kind: 'memory', threads: o.threads };
  let t = o.threads;
  while (t > 1 && !fit(t)) t--;
  if (fit(t)) {
    o.log?.(`${t} local worker thread${t === 1 ? '' : 's'} instead of ${o.threads}: each holds the model (${gib(weights)} of float32 weights), and ${o.threads} would need about ${gib(searchMemoryBytes(weights, o.threads))}, over --max-memory ${gib(o.maxMemory)}`);
    return { kind: 'memory', threads: t };
  }
  const why =
    weights > MAX_MODEL_BUFFER
      ? `${gib(weights)} of float32 weights, over the 4 GiB a worker thread can be handed`
      : `the model in memory would need about ${gib(searchMemoryBytes(weights, 1))} with one worker thread, over --max-memory ${gib(o.maxMemory)}`;
  return { kind: 'streamed', weights, why };
}

/**
 * Bytes a search block by block holds at once, roughly: the largest segment's float32
 * weights three times (as read, onnxruntime's copy, the masked layers being written); the
 * largest layer's scoring buffers (W, |W|, G, scores, mask bits and bytes: 5 floats and a
 * byte and a bit per weight); the hidden states of all windows carried from block to block
 * with the prelude's mask and rotary tables (about twice the states), for the fitness
 * windows and for the calibration windows of X; and one batch of the head's logits and
 * log-softmax. Like the other budgets it leaves out the runtime (Node and onnxruntime).
 */
export function streamedSearchBytes(source: WeightSource, layers: PrunableLayer[], o: { seqlen: number; fitnessWindows: number; calibrationWindows: number; batchSize: number }): number {
  const g = source.model.graph!;
  const elems = new Map((g.initializer ?? []).map((t) => [t.name!, tensorDims(t).reduce((a, d) => a * d, 1)]));
  const plan = planSegments(source.model);
  const segment = Math.max(...plan.segments.map((s) => s.initializers.reduce((a, n) => a + (elems.get(n) ?? 0), 0)));
  const layer = Math.max(...layers.map((l) => l.out * l.in));
  const hidden = Math.min(...layers.map((l) => l.in));
  const states = 2 * Math.max(o.fitnessWindows, o.calibrationWindows) * o.seqlen * hidden;
  const head = 2 * o.batchSize * o.seqlen * (modelVocabSize(source.model) ?? 0);
  return 4 * (3 * segment + states + head) + Math.ceil(21.2 * layer);
}
