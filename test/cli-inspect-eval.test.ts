import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import seedrandom from 'seedrandom';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';

const cfg = { vocabSize: 48, dim: 16, layers: 2, heads: 4, kvHeads: 2, ffn: 24, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
const BIN = path.resolve(import.meta.dirname, '..', 'bin', 'symprune.mjs');
let dir = '';
let tokens: Int32Array;

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: dir });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function writeBin(file: string, ids: ArrayLike<number>): string {
  const p = path.join(dir, file);
  fs.writeFileSync(p, new Uint8Array(Uint16Array.from(ids).buffer));
  return p;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-cli-'));
  // A model folder with external data, in the torch-export naming style.
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 5, 0.2), { weightNames: 'torch-generated' }), path.join(dir, 'm', 'model.onnx'), { externalData: 'always' });
  const rng = seedrandom('cli');
  tokens = Int32Array.from({ length: 300 }, () => Math.floor(rng() * cfg.vocabSize));
  writeBin('ids.bin', tokens);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('inspect lists the prunable layers with [out, in] shapes and totals', () => {
  const text = cli('inspect', '--model', 'm');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /model\.layers\.1\.self_attn\.k_proj\s+\[8, 16\]\s+128\s+float32/);
  assert.match(text.stdout, /model\.layers\.0\.mlp\.down_proj\s+\[16, 24\]\s+384/);
  assert.match(text.stdout, /14 prunable layers in 2 blocks, 3,840 parameters/);
  const js = cli('inspect', '--model', 'm/model.onnx', '--json', '--all');
  assert.equal(js.code, 0, js.stderr);
  const o = JSON.parse(js.stdout);
  assert.equal(o.layers.length, 16);
  assert.deepEqual(o.layers.find((l: { name: string }) => l.name === 'lm_head').shape, [48, 16]);
  assert.equal(o.totals.params, 3840 + 2 * 48 * 16);
});

test('eval prints the same perplexity as the evaluator in-process, --json with the documented fields', async () => {
  const r = cli('eval', '--model', 'm', '--data', 'ids.bin', '--seqlen', '32', '--max-tokens', '200', '--json');
  assert.equal(r.code, 0, r.stderr);
  const o = JSON.parse(r.stdout);
  for (const k of ['ppl', 'tokens', 'seqlen', 'seconds', 'model', 'data']) assert.ok(k in o, `missing ${k}`);
  assert.equal(o.seqlen, 32);
  assert.equal(o.windows, 6);
  assert.equal(o.tokens, 6 * 31);
  const { loadModel } = await import('../src/onnx/model-io.ts');
  const ev = await PerplexityEvaluator.create(await loadModel(path.join(dir, 'm', 'model.onnx')), { threads: 1 });
  const ref = await ev.evaluate(tokens, { seqlen: 32, maxTokens: 200 });
  assert.ok(Math.abs(o.ppl - ref.ppl) < 1e-9 * ref.ppl, `${o.ppl} vs ${ref.ppl}`);
  const text = cli('eval', '--model', 'm/model.onnx', '--data', 'ids.bin', '--seqlen', '64');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^perplexity \d+\.\d{3} on ids\.bin \(252 predicted tokens in 4 windows of 64/);
});

test('bad input: one line on stderr, exit code 2', async () => {
  fs.writeFileSync(path.join(dir, 'notes.onnx'), 'not a model at all\n');
  const noLogits = buildLlama(cfg, initLlamaWeights(cfg, 5));
  noLogits.graph!.output![0]!.name = 'out';
  noLogits.graph!.node!.find((n) => n.output![0] === 'logits')!.output![0] = 'out';
  await saveModel(noLogits, path.join(dir, 'nologits.onnx'));
  writeBin('big.bin', [1, 2, 3, cfg.vocabSize + 5, 4, 5, 6, 7, 8, 9, 10, 11]);
  const cases: Array<[string[], RegExp]> = [
    [['inspect', '--model', 'missing.onnx'], /model not found: missing\.onnx/],
    [['inspect', '--model', 'notes.onnx'], /notes\.onnx is not an ONNX model/],
    [['eval', '--model', 'missing-dir', '--data', 'ids.bin'], /model not found/],
    [['eval', '--model', 'notes.onnx', '--data', 'ids.bin'], /is not an ONNX model/],
    [['eval', '--model', 'nologits.onnx', '--data', 'ids.bin', '--seqlen', '16'], /no 'logits' output/],
    [['eval', '--model', 'm', '--data', 'big.bin', '--seqlen', '4'], /53|outside|vocab/],
    [['eval', '--model', 'm', '--data', 'ids.bin', '--seqlen', '512'], /--seqlen 512: the model has 64 positions/],
    [['eval', '--model', 'm', '--data', 'missing.bin', '--seqlen', '16'], /missing\.bin/],
  ];
  for (const [args, re] of cases) {
    const r = cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(lines[0]!, re, args.join(' '));
  }
});
