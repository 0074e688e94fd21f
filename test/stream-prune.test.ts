import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel, saveModel } from '../src/onnx/model-io.ts';
import { OnnxFileSource, ExternalDataWriter } from '../src/onnx/weight-source.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { baselineMethod } from '../src/prune/baselines.ts';
import { loadCalibrationWindows, modelVocabSize } from '../src/prune/calibration-windows.ts';
import { prunableLayers, pruneFromSource, pruneModel } from '../src/prune/prune-model.ts';
import { readLayerWeight } from '../src/prune/discover.ts';
import { parsePattern } from '../src/prune/score.ts';

const ref = JSON.parse(fs.readFileSync(new URL('./fixtures/stream-masks.json', import.meta.url), 'utf8')) as {
  nsamples: number; seqlen: number; sparsity: number; cases: Record<string, Record<string, string>>;
};
const bundled = new URL('../models/brown-llama/', import.meta.url).pathname;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-stream-prune-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function maskHash(w: Float32Array): string {
  const m = new Uint8Array(w.length);
  for (let i = 0; i < w.length; i++) m[i] = w[i] === 0 ? 1 : 0;
  return crypto.createHash('sha256').update(m).digest('hex').slice(0, 16);
}

for (const key of ['wanda/sequential', 'sparsegpt/sequential', 'sparsegpt/one-shot', 'wanda/one-shot']) {
  test(`block-streamed ${key} gives the masks of the pre-streaming implementation on the bundled model`, async () => {
    const [method, calibration] = key.split('/') as ['wanda' | 'sparsegpt', 'sequential' | 'one-shot'];
    const model = await loadModel(path.join(bundled, 'model.onnx'));
    const layers = prunableLayers(model);
    const windows = await loadCalibrationWindows({ data: 'brown:calib', nsamples: ref.nsamples, seqlen: ref.seqlen, vocabSize: modelVocabSize(model), seed: 0, tokenizerPath: path.join(bundled, 'tokenizer.json') });
    await pruneModel(model, { method: baselineMethod(method), sparsity: ref.sparsity, pattern: parsePattern('unstructured', ref.sparsity), calibration, windows, layers, threads: 2 });
    const want = ref.cases[key]!;
    const differ = layers.filter((l) => maskHash(readLayerWeight(model, l)) !== want[l.name]).map((l) => l.name);
    assert.deepEqual(differ, [], `layers whose mask changed: ${differ.join(', ')}`);
  });
}

test('a model with external data is pruned tensor by tensor into a new model with external data, as in memory', async () => {
  const cfg = { vocabSize: 96, dim: 32, layers: 3, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
  const dense = buildLlama(cfg, initLlamaWeights(cfg, 5, 0.15));
  const src = path.join(tmp, 'in', 'model.onnx');
  await saveModel(dense, src, { externalData: 'always' });
  const windows = Array.from({ length: 6 }, (_, k) => Int32Array.from({ length: 16 }, (_, j) => (k * 31 + j * 7) % cfg.vocabSize));
  const opts = { method: baselineMethod('sparsegpt'), sparsity: 0.5, pattern: parsePattern('unstructured', 0.5), calibration: 'sequential' as const, windows, threads: 1 };
  const inMemory = await loadModel(src);
  await pruneModel(inMemory, opts);

  const source = await OnnxFileSource.open(src);
  assert.equal(source.lazy, true);
  const out = path.join(tmp, 'out', 'model.onnx');
  const writer = await ExternalDataWriter.open(out);
  try {
    await pruneFromSource(source, { ...opts, sink: async (ts) => { for (const t of ts) await writer.put(t); } });
    await writer.finish(source);
  } finally {
    await source.close();
  }
  assert.ok(fs.existsSync(`${out}.data`));
  const back = await loadModel(out);
  for (const l of prunableLayers(inMemory)) assert.deepEqual(readLayerWeight(back, l), readLayerWeight(inMemory, l), l.name);
  // tensors that were not pruned are copied unchanged
  const norm = (m: typeof back) => Array.from(new Float32Array((m.graph!.initializer!.find((t) => t.name === 'lm_head.weight')!.rawData as Uint8Array).slice().buffer));
  assert.deepEqual(norm(back), norm(inMemory));
});
