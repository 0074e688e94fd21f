/**
 * Prune a model of any size: in memory when it fits the memory budget, block by
 * block otherwise. Block by block, the input's weights are read one block at a time
 * and the pruned ones written to an ONNX data file as each block is done, so peak
 * memory is one block plus the calibration states, whatever the model size. G, when a
 * method reads it, is computed first, by the whole model's gradient graph when that
 * fits the budget and block by block otherwise (gradientPlan). (OWL reads every layer
 * of the dense model at once: it keeps the model in memory whatever the budget.)
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ModelProto } from '../onnx/proto.ts';
import { ExternalDataWriter, memorySource, OnnxFileSource, wholeModelBytes } from '../onnx/weight-source.ts';
import type { ModelDescription } from '../model/load.ts';
import { writeHfLike, writeOnnxLike, type OutputFormat } from '../model/write.ts';
import type { ModelSource } from '../model/source.ts';
import { gradientPlan, prunableLayers, pruneFromSource, type PruneModelOptions, type PruneResult } from './prune-model.ts';

/** A pruned model: in memory (runnable graph and stored form), or an ONNX file with external data. */
export type PrunedModel = { kind: 'memory'; model: ModelProto; original: ModelProto } | { kind: 'file'; file: string };

/** Whether pruning needs every dense weight at once (OWL). */
function needsWholeModel(opts: PruneModelOptions): boolean {
  return (opts.allocation?.kind ?? 'uniform') !== 'uniform';
}

/**
 * Prune the model of `source` (see the file comment). Block by block, the pruned model
 * is written to `streamFile` (ONNX, stored form of the input, with `<streamFile>.data`).
 */
export async function pruneModelSource(source: ModelSource, streamFile: string, opts: PruneModelOptions & { maxMemory: number }): Promise<{ result: PruneResult; pruned: PrunedModel }> {
  const windows = opts.windows ?? [];
  const needG = opts.method.needs.G && !opts.stats?.has.G;
  const gradients = needG ? gradientPlan(source, opts.layers ?? prunableLayers(source.model), windows.length, windows[0]?.length ?? 0, opts.maxMemory) : undefined;
  opts = { ...opts, gradients };
  if ((wholeModelBytes(source) <= opts.maxMemory && gradients !== 'streamed') || needsWholeModel(opts)) {
    const { model, original } = await source.loadAll();
    const result = await pruneFromSource(memorySource(model), opts, model);
    return { result, pruned: { kind: 'memory', model, original } };
  }
  const writer = await ExternalDataWriter.open(streamFile);
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
  await writer.finish(source, source.original);
  return { result, pruned: { kind: 'file', file: streamFile } };
}

/**
 * Write a pruned model into `outDir` in `format`, with the input's tokenizer. A model
 * pruned block by block is already `<outDir>/model.onnx` for ONNX output; for a
 * Hugging Face output its scratch ONNX file is read back tensor by tensor and removed.
 */
export async function writePrunedModel(d: ModelDescription, pruned: PrunedModel, format: OutputFormat, outDir: string, extraJson: Record<string, unknown> = {}): Promise<{ externalDataFile?: string }> {
  if (pruned.kind === 'memory') {
    if (format === 'onnx') return writeOnnxLike(d, pruned.original, outDir);
    await writeHfLike(d, pruned.model, outDir, extraJson);
    return {};
  }
  if (format === 'onnx') {
    if (d.tokenizerPath && fs.existsSync(d.tokenizerPath)) fs.copyFileSync(d.tokenizerPath, path.join(outDir, 'tokenizer.json'));
    return { externalDataFile: `${pruned.file}.data` };
  }
  const src = await OnnxFileSource.open(pruned.file);
  try {
    await writeHfLike(d, async (name) => (await src.resolve([name]))[0], outDir, extraJson);
  } finally {
    await src.close();
    fs.rmSync(pruned.file, { force: true });
    fs.rmSync(`${pruned.file}.data`, { force: true });
  }
  return {};
}

/** Where a model pruned block by block is written before it takes its output form. */
export function streamFileFor(format: OutputFormat, outDir: string): string {
  return path.join(outDir, format === 'onnx' ? 'model.onnx' : '.symprune-pruned.onnx');
}
