import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadModelGraph, resolveModel } from '../src/model/load.ts';
import { openModelSource } from '../src/model/source.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';
import { discoverLayers } from '../src/prune/discover.ts';
import { InputError } from '../src/errors.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { makeCheckpoint, referencePerplexity } from './support/hf-checkpoint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-hf-'));
const tokens = Int32Array.from({ length: 48 }, (_, i) => (i * 17 + 5) % 41);

async function onnxPerplexity(dir: string, seqlen: number): Promise<number> {
  const model = await loadModelGraph(resolveModel(dir));
  const ev = await PerplexityEvaluator.create(model, { threads: 1 });
  return (await ev.evaluate(tokens, { seqlen })).ppl;
}

async function checkAgainstReference(c: LlamaConfig, dir: string, stored: Map<string, Float32Array>): Promise<void> {
  const ppl = await onnxPerplexity(dir, 16);
  const ref = referencePerplexity(c, stored, tokens, 16);
  assert.ok(Math.abs(ppl - ref) / ref < 1e-4, `ppl ${ppl} vs reference ${ref}`);
  assert.ok(ref > 2 && ref < 1000, `a perplexity that means something (${ref})`);
}

test('HF llama: GQA + tied embeddings + bf16, sharded, matches the plain forward', async () => {
  const c: LlamaConfig = { vocabSize: 41, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5, tieWordEmbeddings: true };
  const dir = tmp();
  const stored = await makeCheckpoint(dir, c, { dtype: 'BF16', maxShardBytes: 8000 });
  const files = fs.readdirSync(dir);
  assert.ok(files.includes('model.safetensors.index.json') && files.filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).length >= 3, files.join(' '));
  assert.ok(!stored.has('lm_head.weight'), 'tied: no lm_head in the files');
  const d = resolveModel(dir);
  assert.equal(d.kind, 'hf');
  assert.equal(d.config!.kvHeads, 2);
  await checkAgainstReference(c, dir, stored);
  // Layers are named as in PyTorch, lm_head excluded by default.
  const layers = discoverLayers(await loadModelGraph(d));
  assert.equal(layers.length, 14);
  assert.deepEqual([layers[0]!.name, layers[1]!.out], ['model.layers.0.self_attn.q_proj', 16]);
  // inspect reports the dtype the files hold, not the graph's float32.
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'symprune.mjs'), 'inspect', '--model', dir, '--all', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout).layers as Array<{ name: string; dtype: string }>;
  assert.equal(rows.length, 16);
  assert.ok(rows.every((x) => x.dtype === 'bfloat16'), JSON.stringify(rows.map((x) => x.dtype)));
});

test('HF qwen2: q/k/v biases in f16 match the plain forward', async () => {
  const c: LlamaConfig = { vocabSize: 41, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 40, maxPositions: 64, ropeTheta: 1e6, normEps: 1e-6, attentionBias: 'qkv' };
  const dir = tmp();
  const stored = await makeCheckpoint(dir, c, { modelType: 'qwen2', dtype: 'F16' });
  assert.ok(stored.has('model.layers.1.self_attn.k_proj.bias') && !stored.has('model.layers.1.self_attn.o_proj.bias'));
  assert.ok(stored.get('model.layers.0.self_attn.q_proj.bias')!.some((v) => Math.abs(v) > 0.1), 'biases that matter');
  assert.equal(resolveModel(dir).config!.attentionBias, 'qkv');
  await checkAgainstReference(c, dir, stored);
});

test('HF llama: llama3 rope scaling, explicit head_dim, matches the plain forward', async () => {
  // head_dim 16 with 4 heads and hidden 48: q_proj is [64, 48], not square.
  const c: LlamaConfig = {
    vocabSize: 41, dim: 48, layers: 1, heads: 4, kvHeads: 1, ffn: 40, maxPositions: 64, ropeTheta: 500000, normEps: 1e-5, headDim: 16,
    ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8 },
  };
  const dir = tmp();
  const stored = await makeCheckpoint(dir, c, { dtype: 'F32' });
  assert.deepEqual(resolveModel(dir).config!.ropeScaling, c.ropeScaling);
  await checkAgainstReference(c, dir, stored);
  // The scaling changes the numbers: without it the perplexity differs.
  const plain = referencePerplexity({ ...c, ropeScaling: undefined }, stored, tokens, 16);
  const scaled = referencePerplexity(c, stored, tokens, 16);
  assert.ok(Math.abs(plain - scaled) / scaled > 1e-3, `rope scaling must matter in this test (${plain} vs ${scaled})`);
});

test('HF linear rope scaling (mistral) and LLaMA attention_bias (q/k/v/o biases) match the plain forward', async () => {
  const c: LlamaConfig = { vocabSize: 41, dim: 32, layers: 1, heads: 2, kvHeads: 2, ffn: 40, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5, ropeScaling: { type: 'linear', factor: 4 } };
  const dir = tmp();
  await checkAgainstReference(c, dir, await makeCheckpoint(dir, c, { modelType: 'mistral' }));
  const biased: LlamaConfig = { ...c, ropeScaling: undefined, attentionBias: 'qkvo' };
  const dir2 = tmp();
  const stored = await makeCheckpoint(dir2, biased);
  assert.ok(stored.has('model.layers.0.self_attn.o_proj.bias'));
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir2, 'config.json'), 'utf8')).attention_bias, true);
  await checkAgainstReference(biased, dir2, stored);
});

test('HF bad input: one clear InputError each', async () => {
  const c: LlamaConfig = { vocabSize: 41, dim: 32, layers: 1, heads: 2, kvHeads: 2, ffn: 40, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };
  const dir = tmp();
  await makeCheckpoint(dir, c, { maxShardBytes: 5000 });
  const cfgFile = path.join(dir, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  const withConfig = (patch: Record<string, unknown>, drop?: string): void => {
    const o = { ...cfg, ...patch };
    if (drop) delete o[drop];
    fs.writeFileSync(cfgFile, JSON.stringify(o));
  };
  const rejects = async (re: RegExp): Promise<void> => {
    await assert.rejects(async () => loadModelGraph(resolveModel(dir)), (e: Error) => e instanceof InputError && re.test(e.message) && !e.message.includes('\n'));
  };
  withConfig({ model_type: 'gpt2' });
  await rejects(/model_type "gpt2" is not supported \(supported: llama, mistral, qwen2\)/);
  withConfig({}, 'hidden_size');
  await rejects(/missing required field hidden_size/);
  withConfig({ rope_scaling: { rope_type: 'yarn', factor: 2 } });
  await rejects(/rope_scaling type "yarn" is not supported/);
  withConfig({ intermediate_size: 44 });
  await rejects(/tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[40, 32\], but config\.json implies \[44, 32\]/);
  // The block-streamed path checks the headers the same way before reading anything.
  await assert.rejects(openModelSource(resolveModel(dir)), (e: Error) => e instanceof InputError && /gate_proj\.weight has shape \[40, 32\]/.test(e.message));
  withConfig({});
  const shards = fs.readdirSync(dir).filter((f) => /^model-0000\d/.test(f));
  fs.renameSync(path.join(dir, shards[1]!), path.join(dir, 'moved'));
  await rejects(new RegExp(`shard ${shards[1]} listed in model.safetensors.index.json is missing`));
  fs.renameSync(path.join(dir, 'moved'), path.join(dir, shards[1]!));
  const f = path.join(dir, shards[0]!);
  fs.truncateSync(f, fs.statSync(f).size - 10);
  await rejects(/points past the end of the file/);
  // As a user meets it: one line, exit code 2, no output folder.
  const out = path.join(dir, 'out');
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'symprune.mjs'), 'prune', '--model', dir, '--method', 'magnitude', '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^symprune: .*safetensors: tensor .* points past the end of the file \(byte \d+ of \d+\)\n$/);
  assert.ok(!fs.existsSync(out));
});
