import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import seedrandom from 'seedrandom';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel, loadModel } from '../src/onnx/model-io.ts';
import { planSegments } from '../src/onnx/block-split.ts';
import { OnnxFileSource, memorySource } from '../src/onnx/weight-source.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';
import { parseMaxMemory, streamedPerplexity } from '../src/eval/perplexity-stream.ts';
import { InputError } from '../src/errors.ts';
import { prepareOnnxDecoder } from '../src/model/onnx-forms.ts';

const cfg = { vocabSize: 80, dim: 32, layers: 3, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
const weights = initLlamaWeights(cfg, 11, 0.2);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-stream-eval-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const rng = seedrandom('eval');
const tokens = Int32Array.from({ length: 16 * 9 + 5 }, () => Math.floor(rng() * cfg.vocabSize));

async function whole(model: Parameters<typeof PerplexityEvaluator.create>[0]): Promise<number> {
  const ev = await PerplexityEvaluator.create(model, { threads: 1 });
  const r = await ev.evaluate(tokens, { seqlen: 16 });
  await ev.release();
  return r.ppl;
}

test('segments: prelude, one per block, tail; block weights in their block only', () => {
  const plan = planSegments(buildLlama(cfg, weights));
  assert.equal(plan.blocks, 3);
  assert.deepEqual(plan.segments.map((s) => s.kind), ['prelude', 'block', 'block', 'block', 'tail']);
  assert.ok(plan.segments[0]!.initializers.includes('model.embed_tokens.weight'));
  for (let i = 0; i < 3; i++) {
    const inits = plan.segments[i + 1]!.initializers;
    assert.ok(inits.includes(`model.layers.${i}.mlp.down_proj.weight`));
    assert.ok(inits.every((n) => !/layers\.\d/.test(n) || n.includes(`layers.${i}.`)), `block ${i}: ${inits.join(', ')}`);
  }
  assert.deepEqual(plan.segments[4]!.initializers.sort(), ['lm_head.weight', 'model.norm.weight']);
});

for (const style of ['module', 'torch-generated'] as const) {
  test(`streamed perplexity equals the whole-model session (${style} names, 1e-5 relative)`, async () => {
    const model = buildLlama(cfg, weights, { weightNames: style });
    const ref = await whole(model);
    const r = await streamedPerplexity(memorySource(model), tokens, { seqlen: 16, threads: 1, batchSize: 2 });
    assert.equal(r.windows, 9);
    assert.ok(Math.abs(r.ppl - ref) <= 1e-5 * ref, `streamed ${r.ppl} vs whole ${ref}`);
  });
}

test('an Optimum-style decoder (KV cache inputs made empty) streams to the whole-model perplexity', async () => {
  const model = prepareOnnxDecoder(buildLlama(cfg, weights, { cache: 'past' }), 'optimum.onnx');
  const ref = await whole(model);
  const r = await streamedPerplexity(memorySource(model), tokens, { seqlen: 16, threads: 1 });
  assert.ok(Math.abs(r.ppl - ref) <= 1e-5 * ref, `streamed ${r.ppl} vs whole ${ref}`);
});

test('a model with external data is read tensor by tensor and gives the same perplexity', async () => {
  const file = path.join(tmp, 'ext', 'model.onnx');
  await saveModel(buildLlama(cfg, weights), file, { externalData: 'always' });
  const ref = await whole(await loadModel(file));
  const src = await OnnxFileSource.open(file);
  assert.equal(src.lazy, true);
  try {
    const r = await streamedPerplexity(src, tokens, { seqlen: 16, threads: 1, maxTokens: 16 * 5 });
    const ev = await PerplexityEvaluator.create(await loadModel(file), { threads: 1 });
    const five = await ev.evaluate(tokens, { seqlen: 16, maxTokens: 16 * 5 });
    await ev.release();
    assert.equal(r.windows, 5);
    assert.ok(Math.abs(r.ppl - five.ppl) <= 1e-5 * five.ppl);
    assert.ok(ref > 1);
  } finally {
    await src.close();
  }
});

test('token ids outside the vocabulary and bad --max-memory are InputErrors', async () => {
  const bad = Int32Array.from(tokens);
  bad[3] = cfg.vocabSize;
  await assert.rejects(streamedPerplexity(memorySource(buildLlama(cfg, weights)), bad, { seqlen: 16, threads: 1 }), InputError);
  assert.equal(parseMaxMemory('2G'), 2 * 2 ** 30);
  assert.equal(parseMaxMemory('800M'), 800 * 2 ** 20);
  assert.equal(parseMaxMemory(123456), 123456);
  assert.throws(() => parseMaxMemory('lots'), InputError);
});
