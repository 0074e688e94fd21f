/**
 * Commands on models run block by block (--max-memory below their size) against the
 * same commands with the whole model in memory: an ONNX model with external data and
 * a bfloat16 Hugging Face folder, as spawned processes. G over a budget that its whole
 * model gradient graph exceeds is computed block by block, with the same result.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { loadModel, saveModel } from '../src/onnx/model-io.ts';
import { saveTokenizerJson, trainBpe } from '../src/data/bpe-train.ts';
import { splitText } from '../src/data/splits.ts';
import { loadTokens } from '../src/data/dataset.ts';
import { discoverLayers, readLayerWeight } from '../src/prune/discover.ts';
import { openHfWeights } from '../src/model/hf-weights.ts';
import { makeCheckpoint } from './support/hf-checkpoint.ts';
import { symprune } from './support/spawn-cli.ts';
import { resolveModel } from '../src/model/load.ts';
import { openModelSource } from '../src/model/source.ts';
import { gradientMemoryBytes, streamedGradientMemoryBytes } from '../src/prune/prune-model.ts';
import { SafetensorsFile } from '../src/prune/stats-file.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-stream-cli-'));
const cfg = { vocabSize: 300, dim: 32, layers: 3, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
const onnxDir = path.join(tmp, 'onnx');
const hfDir = path.join(tmp, 'hf');
const calibBin = path.join(tmp, 'calib.bin');
const CAL = ['--nsamples', '6', '--seqlen', '16', '--threads', '1', '--data', calibBin];
const STREAM = ['--max-memory', '1K'];

before(async () => {
  fs.mkdirSync(onnxDir, { recursive: true });
  const tok = path.join(onnxDir, 'tokenizer.json');
  saveTokenizerJson(trainBpe(splitText('calib').slice(0, 30000), { vocabSize: cfg.vocabSize }), tok);
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 4, 0.15)), path.join(onnxDir, 'model.onnx'), { externalData: 'always' });
  await makeCheckpoint(hfDir, cfg, { dtype: 'BF16', seed: 2 });
  fs.copyFileSync(tok, path.join(hfDir, 'tokenizer.json'));
  const ids = await loadTokens('brown:calib', { tokenizerPath: tok });
  fs.writeFileSync(calibBin, Uint16Array.from(ids.subarray(0, 8000)));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));


async function json(...args: string[]): Promise<Record<string, unknown>> {
  const r = await symprune(...args);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

for (const [form, dir] of [['ONNX with external data', onnxDir], ['bfloat16 Hugging Face folder', hfDir]] as const) {
  test(`eval of a ${form}: block by block gives the whole-model perplexity`, async () => {
    const whole = await json('eval', '--model', dir, '--max-tokens', '640', '--seqlen', '32', '--threads', '1', '--json');
    const streamed = await json('eval', '--model', dir, '--max-tokens', '640', '--seqlen', '32', '--threads', '1', '--json', ...STREAM);
    assert.equal(whole.streamed, false);
    assert.equal(streamed.streamed, true);
    assert.ok(Math.abs((streamed.ppl as number) - (whole.ppl as number)) <= 1e-5 * (whole.ppl as number), `${streamed.ppl} vs ${whole.ppl}`);
  });
}

test('baselines of a model over --max-memory: each row pruned and evaluated block by block, as in memory', async () => {
  const args = ['baselines', '--model', onnxDir, '--methods', 'magnitude,wanda,sparsegpt', ...CAL, '--eval-tokens', '640', '--task', 'none', '--json'];
  type Table = { dense: { ppl: number }; methods: Array<{ method: string; ppl: number; sparsity: number }> };
  const whole = (await json(...args)) as unknown as Table;
  const streamed = (await json(...args, ...STREAM)) as unknown as Table;
  const close = (x: number, y: number) => Math.abs(x - y) <= 1e-5 * y;
  assert.ok(close(streamed.dense.ppl, whole.dense.ppl), `dense ${streamed.dense.ppl} vs ${whole.dense.ppl}`);
  assert.deepEqual(streamed.methods.map((m) => m.method), ['magnitude', 'wanda', 'sparsegpt']);
  for (const [i, m] of streamed.methods.entries()) {
    assert.ok(close(m.ppl, whole.methods[i]!.ppl), `${m.method}: ${m.ppl} vs ${whole.methods[i]!.ppl}`);
    assert.equal(m.sparsity, whole.methods[i]!.sparsity, m.method);
  }
  assert.ok(whole.methods.every((m) => Math.abs(m.sparsity - 0.5) < 0.01 && m.ppl !== whole.dense.ppl), 'every row pruned half the weights');
});

test('search on an ONNX model with external data over --max-memory: candidates evaluated block by block, the run of the same search in memory', async () => {
  const run = (name: string, ...extra: string[]) =>
    json('search', '--model', onnxDir, '--db', path.join(tmp, 'search', `${name}.sqlite`), '--fitness-data', calibBin, '--eval-tokens', '640', ...CAL, '--population', '4', '--generations', '1', '--batch', '2', '--seed', '3', '--terminals', 'W,X', '--baselines', 'magnitude', '--workers', '1', '--json', ...extra);
  const whole = await run('whole');
  const streamed = await run('streamed', '--max-memory', '900K');
  assert.equal(streamed.status, 'finished');
  assert.equal(streamed.best, whole.best);
  assert.equal(streamed.individuals, whole.individuals);
  assert.deepEqual(streamed.evaluations, whole.evaluations);
  assert.ok(Math.abs((streamed.ppl as number) - (whole.ppl as number)) <= 1e-5 * (whole.ppl as number), `${streamed.ppl} vs ${whole.ppl}`);
});

test('search on a model that does not fit even block by block: one line with the figure, nothing left behind', async () => {
  const db = path.join(tmp, 'search-refused', 'run.sqlite');
  const r = await symprune('search', '--model', onnxDir, '--db', db, '--fitness-data', calibBin, ...CAL, '--workers', '2', '--max-memory', '100K');
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr.trim(), /^symprune: search block by block still holds about [\d.]+ MiB \(one decoder block, the hidden states of \d+ windows of 16 tokens\), over --max-memory 0\.1 MiB; use fewer --eval-tokens or --nsamples/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.ok(!fs.existsSync(path.join(tmp, 'search-refused')), 'nothing written');
});

test('prune of an ONNX model with external data block by block writes the model pruning in memory writes, and evaluates it', async () => {
  const a = path.join(tmp, 'p-whole');
  const b = path.join(tmp, 'p-stream');
  const ra = await json('prune', '--model', onnxDir, '--method', 'sparsegpt', ...CAL, '--out', a, '--eval', '--eval-tokens', '640', '--task', 'none', '--json');
  const rb = await json('prune', '--model', onnxDir, '--method', 'sparsegpt', ...CAL, '--out', b, '--eval', '--eval-tokens', '640', '--task', 'none', '--json', ...STREAM);
  assert.ok(fs.existsSync(path.join(b, 'model.onnx.data')) && fs.existsSync(path.join(b, 'tokenizer.json')));
  const [ma, mb] = [await loadModel(path.join(a, 'model.onnx')), await loadModel(path.join(b, 'model.onnx'))];
  for (const l of discoverLayers(ma)) assert.deepEqual(readLayerWeight(mb, l), readLayerWeight(ma, l), l.name);
  const ea = ra.eval as { ppl: number };
  const eb = rb.eval as { ppl: number };
  assert.ok(Math.abs(eb.ppl - ea.ppl) <= 1e-5 * ea.ppl, `${eb.ppl} vs ${ea.ppl}`);
});

test('prune of a Hugging Face folder block by block writes the folder pruning in memory writes', async () => {
  const a = path.join(tmp, 'h-whole');
  const b = path.join(tmp, 'h-stream');
  await json('prune', '--model', hfDir, '--method', 'wanda', ...CAL, '--out', a, '--json');
  await json('prune', '--model', hfDir, '--method', 'wanda', ...CAL, '--out', b, '--json', ...STREAM);
  assert.ok(!fs.readdirSync(b).some((f) => f.startsWith('.symprune')), `scratch files left: ${fs.readdirSync(b).join(', ')}`);
  const [wa, wb] = [await openHfWeights(a), await openHfWeights(b)];
  try {
    for (const name of wa.layout.flatMap((l) => l.names)) assert.deepEqual(await wb.readFloat32(name), await wa.readFloat32(name), name);
  } finally {
    await wa.close();
    await wb.close();
  }
});

/** A budget under the whole model's gradient graph and over G block by block (nsamples 6, seqlen 16). */
async function gradientBudget(dir: string): Promise<string> {
  const source = await openModelSource(resolveModel(dir));
  try {
    const whole = gradientMemoryBytes(source);
    const streamed = streamedGradientMemoryBytes(source, discoverLayers(source.model), 6, 16);
    assert.ok(streamed < whole, `G block by block needs ${streamed} bytes, the whole model ${whole}`);
    return String(Math.floor((whole + streamed) / 2));
  } finally {
    await source.close();
  }
}

/** Largest |a - b| of each tensor relative to its largest |b|. */
function assertSameStats(fa: string, fb: string): void {
  const [a, b] = [SafetensorsFile.open(fa), SafetensorsFile.open(fb)];
  try {
    assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    for (const name of b.tensors.keys()) {
      const [x, y] = [a.read(name), b.read(name)];
      const scale = y.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const diff = x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
      assert.ok(scale > 0 && diff <= 1e-5 * scale, `${name}: differs by ${diff} (largest ${scale})`);
    }
  } finally {
    a.close();
    b.close();
  }
}

for (const [form, dir] of [['ONNX with external data', onnxDir], ['bfloat16 Hugging Face folder', hfDir]] as const) {
  test(`stats of a ${form} over the budget of the whole model's G: G block by block, the same file`, async () => {
    const [fa, fb] = [path.join(tmp, `sw-${form.length}.safetensors`), path.join(tmp, `ss-${form.length}.safetensors`)];
    const whole = await json('stats', '--model', dir, ...CAL, '--out', fa, '--json');
    const streamed = await json('stats', '--model', dir, ...CAL, '--out', fb, '--json', '--max-memory', await gradientBudget(dir));
    assert.equal(whole.gradients, 'whole');
    assert.equal(streamed.gradients, 'streamed');
    assertSameStats(fb, fa);
  });
}

test("prune --method gblm over the budget of the whole model's G: G block by block, the same pruned model", async () => {
  const a = path.join(tmp, 'g-whole');
  const b = path.join(tmp, 'g-stream');
  await json('prune', '--model', onnxDir, '--method', 'gblm', ...CAL, '--out', a, '--json');
  await json('prune', '--model', onnxDir, '--method', 'gblm', ...CAL, '--out', b, '--json', '--max-memory', await gradientBudget(onnxDir));
  // The whole model is written in one file, a model pruned block by block with its data file.
  assert.ok(!fs.existsSync(path.join(a, 'model.onnx.data')) && fs.existsSync(path.join(b, 'model.onnx.data')), 'pruned block by block');
  const [ma, mb] = [await loadModel(path.join(a, 'model.onnx')), await loadModel(path.join(b, 'model.onnx'))];
  for (const l of discoverLayers(ma)) assert.deepEqual(readLayerWeight(mb, l), readLayerWeight(ma, l), l.name);
});

test('stats over the memory budget even block by block: one line saying how much G needs', async () => {
  const r = await symprune('stats', '--model', onnxDir, ...CAL, '--out', path.join(tmp, 's.safetensors'), ...STREAM);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr.trim(), /^symprune: G needs about [\d.]+ GiB even block by block, over --max-memory/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.ok(!fs.existsSync(path.join(tmp, 's.safetensors')));
});
