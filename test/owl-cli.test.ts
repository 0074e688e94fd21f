/** `symprune baselines` with OWL and a metric row, as a user runs it (spawned, tiny model). */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { symprune } from './support/spawn-cli.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-owl-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));


test('baselines: a metric equal to Wanda gives Wanda\'s rows, with and without OWL; OWL rows refused for N:M', async () => {
  const cfg = { vocabSize: 4096, dim: 32, layers: 3, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
  const dir = path.join(tmp, 'tiny');
  fs.mkdirSync(dir);
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 5, 0.15)), path.join(dir, 'model.onnx'));
  fs.copyFileSync(path.join(ROOT, 'models', 'brown-llama', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  const common = ['baselines', '--model', dir, '--nsamples', '8', '--seqlen', '16', '--threads', '1', '--eval-tokens', '1024', '--task', 'none', '--json'];
  const r = await symprune(...common, '--sparsity', '0.6', '--methods', 'wanda,wanda+owl,metric,metric+owl', '--metric', 'mul(abs(W),sqrt(X))');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const ppl = (m: string) => j.methods.find((x: { method: string }) => x.method === m).ppl;
  assert.equal(j.metric.replace(/\s/g, ''), 'mul(abs(W),sqrt(X))');
  assert.equal(ppl('metric'), ppl('wanda'));
  assert.equal(ppl('metric+owl'), ppl('wanda+owl'));
  assert.notEqual(ppl('wanda+owl'), ppl('wanda'));
  const bad = await symprune(...common, '--pattern', '2:4', '--methods', 'wanda+owl');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^symprune: .*OWL rows need --pattern unstructured/);
});
