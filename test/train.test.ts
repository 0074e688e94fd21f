/**
 * The trainer on a tiny LLaMA over real text (Brown, UTF-8 bytes as tokens): the loss
 * falls, held-out perplexity falls, an interrupted run resumed from its checkpoint ends
 * with exactly the weights of an uninterrupted one; plus the schedule, AdamW against a
 * float64 reference, the unigram baseline and config validation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { splitText } from '../src/data/splits.ts';
import { parseTrainConfig, type TrainConfig } from '../src/train/config.ts';
import { trainLlama } from '../src/train/trainer.ts';
import { learningRate } from '../src/train/schedule.ts';
import { adamwUpdate, globalNorm } from '../src/train/adamw.ts';
import { fitUnigram, unigramPerplexity } from '../src/train/unigram.ts';
import { InputError } from '../src/errors.ts';

const bytes = (s: string) => Int32Array.from(new TextEncoder().encode(s));
const trainText = splitText('train').slice(0, 60000);
const evalText = splitText('search').slice(0, 8000);
const data = { train: bytes(trainText), eval: bytes(evalText) };

function tinyConfig(over: Record<string, unknown> = {}): TrainConfig {
  return parseTrainConfig({
    model: { vocabSize: 257, dim: 32, layers: 2, heads: 2, kvHeads: 1, ffn: 64, maxPositions: 32, ropeTheta: 10000, normEps: 1e-5 },
    seqlen: 32, batchSize: 8, steps: 40, lr: 1e-2, minLr: 1e-3, warmup: 5, weightDecay: 0.1, gradClip: 1,
    evalInterval: 20, evalTokens: 4096, checkpointInterval: 0, seed: 7, initStd: 0.05,
    ...over,
  });
}

test('a few steps on a tiny config lower the training loss and the held-out perplexity', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'symprune-train-'));
  try {
    const r = await trainLlama(tinyConfig(), data, { checkpointDir: dir, threads: 1 });
    assert.equal(r.stepsDone, 40);
    assert.ok(r.finished);
    assert.equal(r.tokensSeen, 40 * 8 * 32);
    const first = r.history.loss.slice(0, 5).reduce((a, b) => a + b) / 5;
    const last = r.history.loss.slice(-5).reduce((a, b) => a + b) / 5;
    assert.ok(Math.abs(r.history.loss[0]! - Math.log(257)) < 0.3, `initial loss ${r.history.loss[0]} should be near log(257)`);
    assert.ok(last < first - 1.5, `loss ${first} -> ${last}`);
    assert.deepEqual(r.history.evals.map((e) => e.step), [20, 40]);
    const uniform = 257;
    assert.ok(r.history.evals[1]!.ppl < r.history.evals[0]!.ppl, 'held-out perplexity did not fall');
    assert.ok(r.history.evals[1]!.ppl < uniform / 4);
    // Trained weights come back in PyTorch layout.
    assert.equal(r.weights.get('model.layers.0.self_attn.k_proj.weight')!.length, 16 * 32);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an interrupted run resumed from its checkpoint matches an uninterrupted one exactly', async () => {
  const a = mkdtempSync(join(tmpdir(), 'symprune-train-a-'));
  const b = mkdtempSync(join(tmpdir(), 'symprune-train-b-'));
  try {
    const cfg = tinyConfig({ steps: 10, evalInterval: 0, warmup: 3 });
    const full = await trainLlama(cfg, data, { checkpointDir: a, threads: 1 });
    const part = await trainLlama(cfg, data, { checkpointDir: b, threads: 1, stopAfter: 4 });
    assert.equal(part.finished, false);
    assert.equal(part.stepsDone, 4);
    const resumed = await trainLlama(cfg, data, { checkpointDir: b, threads: 1, resume: true });
    assert.equal(resumed.stepsDone, 10);
    assert.deepEqual(resumed.history.loss, full.history.loss);
    for (const [name, w] of full.weights) assert.deepEqual(resumed.weights.get(name), w, `${name} differs after resume`);
    // A changed config refuses to resume.
    await assert.rejects(trainLlama(tinyConfig({ steps: 10, evalInterval: 0, warmup: 3, lr: 5e-3 }), data, { checkpointDir: b, resume: true }), InputError);
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
});

test('learning rate: linear warm-up, cosine to the floor', () => {
  const o = { lr: 1, minLr: 0.1, warmup: 4, steps: 14 };
  assert.deepEqual([0, 1, 2, 3].map((s) => learningRate(s, o)), [0.25, 0.5, 0.75, 1]);
  assert.equal(learningRate(4, o), 1);
  assert.ok(Math.abs(learningRate(13, o) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(9, o) - (0.1 + 0.45 * (1 + Math.cos(Math.PI * 5 / 9)))) < 1e-12);
  for (let s = 4; s < 13; s++) assert.ok(learningRate(s + 1, o) < learningRate(s, o));
});

test('AdamW update matches a float64 reference, with decoupled decay only where asked', () => {
  const p0 = [0.5, -1.2, 2];
  const grads = [[0.1, -0.3, 0.02], [0.05, 0.2, -0.4], [-0.2, 0.1, 0.3]];
  const o = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  for (const decay of [true, false]) {
    const slot = { param: Float32Array.from(p0), m: new Float32Array(3), v: new Float32Array(3), decay };
    const ref = { p: [...p0], m: [0, 0, 0], v: [0, 0, 0] };
    grads.forEach((g, k) => {
      const t = k + 1;
      const lr = 0.01 * t;
      const scale = 0.5;
      adamwUpdate(slot, Float32Array.from(g), t, lr, o, scale);
      for (let i = 0; i < 3; i++) {
        const gi = g[i]! * scale;
        ref.m[i] = 0.9 * ref.m[i]! + 0.1 * gi;
        ref.v[i] = 0.95 * ref.v[i]! + 0.05 * gi * gi;
        const mh = ref.m[i]! / (1 - 0.9 ** t);
        const vh = ref.v[i]! / (1 - 0.95 ** t);
        if (decay) ref.p[i] = ref.p[i]! - lr * 0.1 * ref.p[i]!;
        ref.p[i] = ref.p[i]! - (lr * mh) / (Math.sqrt(vh) + 1e-8);
      }
    });
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(slot.param[i]! - ref.p[i]!) < 1e-6, `decay=${decay} p[${i}] ${slot.param[i]} vs ${ref.p[i]}`);
  }
  assert.ok(Math.abs(globalNorm([Float32Array.from([3]), Float32Array.from([4, 0])]) - 5) < 1e-12);
});

test('unigram baseline: add-one smoothing, perplexity over predicted window positions', () => {
  const u = fitUnigram(Int32Array.from([0, 0, 0, 1]), 3); // counts 3,1,0 -> (4,2,1)/7
  assert.ok(Math.abs(Math.exp(u.logProbs[0]!) - 4 / 7) < 1e-12);
  assert.ok(Math.abs(Math.exp(u.logProbs[2]!) - 1 / 7) < 1e-12);
  // windows of 2: [0,1],[2,0] (trailing 1 dropped) -> predicted tokens 1 and 0
  const r = unigramPerplexity(u, Int32Array.from([0, 1, 2, 0, 1]), 2);
  assert.equal(r.tokens, 2);
  assert.ok(Math.abs(r.ppl - Math.exp(-(Math.log(2 / 7) + Math.log(4 / 7)) / 2)) < 1e-12);
});

test('config validation names the bad field', () => {
  const base = { model: { vocabSize: 300, dim: 8, layers: 1, heads: 2, kvHeads: 2, ffn: 8, maxPositions: 16, ropeTheta: 1e4, normEps: 1e-5 }, steps: 3, seqlen: 8 };
  assert.throws(() => parseTrainConfig({ ...base, seqlen: 64 }), /seqlen 64 exceeds model.maxPositions/);
  assert.throws(() => parseTrainConfig({ ...base, tokenizer: { vocabSize: 512 } }), /differs from model.vocabSize/);
  assert.throws(() => parseTrainConfig({ ...base, betas: [0.9] }), /betas/);
  assert.throws(() => parseTrainConfig({ ...base, stepz: 3 }), /unknown field 'stepz'/);
  assert.throws(() => parseTrainConfig({ ...base, steps: undefined }), /steps must be a number/);
  assert.equal(parseTrainConfig({ ...base, steps: undefined, tokens: 100, batchSize: 2 }).steps, 7);
});

test('runTraining end to end on text files: tokenizer, model.onnx, card.json that evaluation reproduces', async () => {
  const { runTraining } = await import('../src/train/run.ts');
  const { loadModel } = await import('../src/onnx/model-io.ts');
  const { PerplexityEvaluator } = await import('../src/eval/perplexity.ts');
  const { loadTokens } = await import('../src/data/dataset.ts');
  const { writeFileSync, existsSync, readFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'symprune-run-'));
  try {
    writeFileSync(join(dir, 'train.txt'), splitText('train').slice(0, 80000));
    writeFileSync(join(dir, 'eval.txt'), splitText('search').slice(0, 6000));
    writeFileSync(join(dir, 'test.txt'), splitText('test').slice(0, 6000));
    const cfg = parseTrainConfig({
      model: { vocabSize: 320, dim: 32, layers: 2, heads: 2, kvHeads: 2, ffn: 64, maxPositions: 32, ropeTheta: 10000, normEps: 1e-5 },
      data: { train: join(dir, 'train.txt'), eval: join(dir, 'eval.txt'), test: join(dir, 'test.txt') },
      seqlen: 32, batchSize: 8, steps: 25, lr: 1e-2, minLr: 1e-3, warmup: 5, evalInterval: 0, checkpointInterval: 0, seed: 2,
    });
    const out = join(dir, 'out');
    const card = await runTraining(cfg, out, { threads: 1 });
    assert.ok(card);
    for (const f of ['model.onnx', 'tokenizer.json', 'card.json']) assert.ok(existsSync(join(out, f)), `${f} missing`);
    assert.ok(!existsSync(join(out, 'checkpoint')), 'the checkpoint of a finished run is removed');
    const onDisk = JSON.parse(readFileSync(join(out, 'card.json'), 'utf8'));
    assert.equal(onDisk.steps, 25);
    assert.equal(onDisk.tokensSeen, 25 * 8 * 32);
    assert.equal(onDisk.seed, 2);
    assert.ok(onDisk.unigram.ppl > 1 && onDisk.test.ppl > 1);
    assert.ok(Math.abs(onDisk.pplRatio - onDisk.test.ppl / onDisk.unigram.ppl) < 1e-12);
    // The written model and tokenizer reproduce the card's test perplexity.
    const tokens = await loadTokens(join(dir, 'test.txt'), { tokenizerPath: join(out, 'tokenizer.json') });
    const ev = await PerplexityEvaluator.create(await loadModel(join(out, 'model.onnx')), { threads: 1 });
    const r = await ev.evaluate(tokens, { seqlen: 32 });
    await ev.release();
    assert.ok(Math.abs(r.ppl - onDisk.test.ppl) < 1e-6 * r.ppl, `${r.ppl} vs card ${onDisk.test.ppl}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
