/**
 * Prune a model file into a new model file, in memory when it fits the memory
 * budget, block by block otherwise: the input's weights are read one block at a
 * time and the pruned ones written to the output's data file as each block is done,
 * so peak memory is one block plus the calibration states, whatever the model size.
 * (G and OWL read every layer of the dense model at once: they keep the model in
 * memory whatever the budget.)
 */
import { saveModel } from '../onnx/model-io.ts';
import { ExternalDataWriter, memorySource, wholeModelBytes, type OnnxFileSource } from '../onnx/weight-source.ts';
import { checkGradientMemory, pruneFromSource, type PruneModelOptions, type PruneResult } from './prune-model.ts';

export interface PruneFileResult {
  result: PruneResult;
  /** The output's external data file, when it has one. */
  externalDataFile?: string;
  /** Whether the model was pruned block by block from disk. */
  streamed: boolean;
}

/** Whether pruning needs every dense weight at once (G computed here, OWL). */
function needsWholeModel(opts: PruneModelOptions): boolean {
  return (opts.method.needs.G && !opts.stats?.has.G) || (opts.allocation?.kind ?? 'uniform') !== 'uniform';
}

/** Prune the model in `source` into `outFile` (see the file comment); `maxMemory` in bytes. */
export async function pruneModelFile(source: OnnxFileSource, outFile: string, opts: PruneModelOptions & { maxMemory: number }): Promise<PruneFileResult> {
  if (wholeModelBytes(source) <= opts.maxMemory || needsWholeModel(opts)) {
    if (opts.method.needs.G && !opts.stats?.has.G) checkGradientMemory(source, opts.maxMemory);
    const model = await source.loadAll();
    const result = await pruneFromSource(memorySource(model), opts, model);
    const saved = await saveModel(model, outFile);
    return { result, externalDataFile: saved.externalDataFile, streamed: false };
  }
  const writer = await ExternalDataWriter.open(outFile);
  let result: PruneResult;
  try {
    result = await pruneFromSource(source, {
      ...opts,
      sink: async (tensors) => {
        for (const t of tensors) await writer.put(t);
      },
    });
  } catch (e) {
    await writer.abort();
    throw e;
  }
  const saved = await writer.finish(source);
  return { result, externalDataFile: saved.externalDataFile, streamed: true };
}
