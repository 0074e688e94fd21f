/**
 * What a search holds in memory, checked before any work: the search keeps the whole model in
 * memory (it is not run block by block), and so does each local worker thread. A model too large
 * for that is refused in one line naming the figure, instead of failing later (an out-of-memory
 * kill, or the 4 GiB limit of the one buffer the model is handed to the threads in).
 */
import { InputError } from '../errors.ts';
import { resolveModel } from '../model/load.ts';
import { openModelSource } from '../model/source.ts';

/**
 * Rough bytes for `threads` local workers, W the float32 weights: the coordinator holds the model,
 * G and the workers' shared copy of the prunable weights (3 W); each thread its decoded model, the
 * dense and the pruned weights it feeds, and onnxruntime's copy of the rest (4 W).
 */
export function searchMemoryBytes(weightBytes: number, threads: number): number {
  return (3 + 4 * threads) * weightBytes;
}

/** The largest model buffer a worker thread can be handed (Node's Buffer limit). */
const MAX_MODEL_BUFFER = 2 ** 32 - 1;

/** InputError when a search on `modelPath` with `threads` local worker threads would not fit `maxMemory` (or one buffer). */
export async function checkSearchMemory(modelPath: string, threads: number, maxMemory: number, flags: { workers: string }): Promise<void> {
  const source = await openModelSource(resolveModel(modelPath));
  let weights: number;
  try {
    // float32 in the workers whatever the stored type (bfloat16 and float16 are widened).
    weights = 4 * (source.model.graph?.initializer ?? []).reduce((a, t) => a + (t.dims ?? []).reduce((p: number, d) => p * Number(d), 1), 0);
  } finally {
    await source.close();
  }
  const gib = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);
  if (weights > MAX_MODEL_BUFFER)
    throw new InputError(`search hands the whole model to its workers in one buffer, and ${modelPath} has ${gib(weights)} of float32 weights, over the 4 GiB one buffer holds; search on a smaller model of the family, then apply the metric with \`prune\` (block by block)`);
  const need = searchMemoryBytes(weights, threads);
  if (need > maxMemory)
    throw new InputError(`search keeps the model in memory, about ${gib(need)} with ${threads} local worker thread${threads === 1 ? '' : 's'} (${gib(weights)} of float32 weights), over --max-memory ${gib(maxMemory)}; use fewer ${flags.workers}, workers on other machines (--queue), or raise --max-memory where the RAM is there`);
}
