/**
 * Write a (pruned) model back in the form it was read: a Hugging Face folder keeps the
 * input's tensor names, dtypes, shard files and index, config and tokenizer files; an
 * ONNX input is saved as ONNX in its original form (an Optimum decoder keeps its KV
 * cache inputs and outputs: the pruned weights are shared with the runnable graph).
 */
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.ts';
import { findInitializer } from '../onnx/graph-edit.ts';
import { saveModel } from '../onnx/model-io.ts';
import type { ModelProto, TensorProto } from '../onnx/proto.ts';
import { tensorDims, tensorToFloat32, transposeInto } from '../onnx/tensor.ts';
import { llamaWeightSpecs } from '../onnx/llama-weights.ts';
import { writeHfCheckpoint } from './hf-write.ts';
import { openHfWeights } from './hf-weights.ts';
import type { FloatDtype } from './safetensors.ts';
import type { ModelDescription } from './load.ts';

export type OutputFormat = 'hf' | 'onnx';

/** Files beside a checkpoint that a loader of the output needs as they are. */
const SIDE_FILES = [
  'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model',
  'vocab.json', 'merges.txt', 'added_tokens.json', 'chat_template.jinja', 'chat_template.json',
];

/** Check `--format` against the input before any work: only an HF input can be written as HF. */
export function outputFormat(d: ModelDescription, format?: string): OutputFormat {
  const f = format ?? d.kind;
  if (f !== 'hf' && f !== 'onnx') throw new InputError(`--format ${format}: expected hf or onnx`);
  if (f === 'hf' && d.kind !== 'hf') throw new InputError(`--format hf: the input ${d.modelPath} is ONNX; a Hugging Face folder can only be written from a Hugging Face input`);
  return f;
}

/**
 * Write `model` (the graph built from `d` by loadModelGraph, pruned in place) into `outDir`
 * as a Hugging Face folder with the input's layout; `extraJson` files (prune.json) are
 * written with it under the same temporary-name-then-rename scheme.
 */
export async function writeHfLike(d: ModelDescription, model: ModelProto | ((name: string) => Promise<TensorProto | undefined>), outDir: string, extraJson: Record<string, unknown> = {}): Promise<string[]> {
  if (d.kind !== 'hf') throw new Error('writeHfLike: not a Hugging Face input');
  const input = await openHfWeights(d.dir);
  try {
    const kinds = new Map(llamaWeightSpecs(d.config!).map((s) => [s.name, s.kind]));
    const tensors = input.layout.flatMap((l) => l.names).map((name) => {
      const e = input.entry(name);
      if (!['F32', 'F16', 'BF16'].includes(e.dtype)) throw new InputError(`${d.dir}: tensor ${name} is ${e.dtype}; only float checkpoints are written`);
      return { name, shape: e.shape, dtype: e.dtype as FloatDtype };
    });
    // Graph initializers carry the (pruned) weights under their PyTorch names; linear
    // ones are stored [in, out]. Anything else in the files is copied from the input.
    const source = async (name: string): Promise<Float32Array> => {
      // A function gives the tensors of a model pruned block by block (read back from its scratch file).
      const t = kinds.has(name) ? (typeof model === 'function' ? await model(name) : findInitializer(model, name)) : undefined;
      if (!t) return input.readFloat32(name);
      const data = tensorToFloat32(t);
      if (kinds.get(name) !== 'linear') return data;
      const [inp, out] = tensorDims(t) as [number, number];
      return transposeInto(data, inp, out);
    };
    const copyFiles: Record<string, string> = {};
    for (const f of SIDE_FILES) if (fs.existsSync(path.join(d.dir, f))) copyFiles[f] = path.join(d.dir, f);
    if (d.tokenizerPath && !copyFiles['tokenizer.json']) copyFiles['tokenizer.json'] = d.tokenizerPath;
    const r = await writeHfCheckpoint(outDir, d.hfConfig!, tensors, source, { layout: input.layout, copyFiles, jsonFiles: extraJson });
    return r.files;
  } finally {
    await input.close();
  }
}

/** Save an ONNX model as `<outDir>/model.onnx` (external data when large) with its tokenizer. */
export async function writeOnnxLike(d: ModelDescription, model: ModelProto, outDir: string): Promise<{ externalDataFile?: string }> {
  fs.mkdirSync(outDir, { recursive: true });
  const saved = await saveModel(model, path.join(outDir, 'model.onnx'));
  if (d.tokenizerPath && fs.existsSync(d.tokenizerPath)) fs.copyFileSync(d.tokenizerPath, path.join(outDir, 'tokenizer.json'));
  return saved;
}
