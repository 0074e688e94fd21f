/**
 * prune -> write -> read on Hugging Face checkpoints: the written folder keeps the
 * input's names, dtypes, tying and shard layout, and loads back to the very model that
 * was pruned in memory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelForms, loadModelGraph, resolveModel } from '../src/model/load.ts';
import { writeHfLike } from '../src/model/write.ts';
import { openHfWeights } from '../src/model/hf-weights.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';
import { pruneModel } from '../src/prune/prune-model.ts';
import { baselineMethod } from '../src/prune/baselines.ts';
import { parsePattern } from '../src/prune/score.ts';
import type { ModelProto } from '../src/onnx/proto.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { makeCheckpoint } from './support/hf-checkpoint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-hfprune-'));
const c: LlamaConfig = { vocabSize: 41, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5, tieWordEmbeddings: true };
const tokens = Int32Array.from({ length: 64 }, (_, i) => (i * 13 + 7) % 41);
const windows = Array.from({ length: 4 }, (_, k) => tokens.subarray(k * 16, k * 16 + 16));

async function ppl(model: ModelProto): Promise<number> {
  const ev = await PerplexityEvaluator.create(model, { threads: 1 });
  return (await ev.evaluate(tokens, { seqlen: 16 })).ppl;
}

/** What a loader sees of a folder: every tensor's file, dtype and shape. */
async function layoutOf(dir: string): Promise<Array<[string, string, string, string]>> {
  const w = await openHfWeights(dir);
  const rows = w.layout.flatMap((l) => l.names.map((n) => [n, l.file, w.entry(n).dtype, w.entry(n).shape.join('x')] as [string, string, string, string]));
  await w.close();
  return rows;
}

test('prune -> write HF -> read: names, dtypes, shards and tying kept; the pruned perplexity reproduced', async () => {
  const input = tmp();
  await makeCheckpoint(input, c, { dtype: 'BF16', maxShardBytes: 8000, extra: { bos_token_id: 1 } });
  fs.writeFileSync(path.join(input, 'generation_config.json'), '{"do_sample": false}\n');
  fs.writeFileSync(path.join(input, 'tokenizer_config.json'), '{"model_max_length": 64}\n');
  const d = resolveModel(input);
  const { model, original } = await loadModelForms(d);
  assert.equal(model, original);
  const dense = await ppl(model);
  await pruneModel(model, { method: baselineMethod('wanda'), sparsity: 0.5, pattern: parsePattern('unstructured', 0.5), windows, threads: 1 });
  const pruned = await ppl(model);
  assert.ok(Math.abs(pruned - dense) / dense > 1e-3, `pruning changed the model (${dense} -> ${pruned})`);

  const out = path.join(tmp(), 'pruned');
  await writeHfLike(d, model, out, { 'prune.json': { method: 'wanda' } });
  assert.deepEqual(await layoutOf(out), await layoutOf(input), 'same tensors in the same files with the same dtypes and shapes');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8')), JSON.parse(fs.readFileSync(path.join(input, 'model.safetensors.index.json'), 'utf8')));
  for (const f of ['config.json', 'generation_config.json', 'tokenizer_config.json']) assert.equal(fs.readFileSync(path.join(out, f), 'utf8').trim(), fs.readFileSync(path.join(input, f), 'utf8').trim(), f);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'prune.json'), 'utf8')).method, 'wanda');
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).tie_word_embeddings, true);

  const back = await loadModelGraph(resolveModel(out));
  assert.equal(await ppl(back), pruned, 'the written checkpoint is the pruned model (bf16 values, zeros exact)');
  const w = await openHfWeights(out);
  const q = await w.readFloat32('model.layers.0.self_attn.q_proj.weight');
  assert.equal(q.filter((v) => v === 0).length, q.length / 2, '50% zeros in a pruned layer');
  await w.close();
});

test('symprune prune on an HF folder: writes HF by default, ONNX with --format onnx; --format hf on ONNX input is refused', async () => {
  const input = tmp();
  await makeCheckpoint(input, c, { dtype: 'F16' });
  const run = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'symprune.mjs'), 'prune', '--model', input, '--method', 'magnitude', '--threads', '1', ...args], { encoding: 'utf8' });
  const hfOut = path.join(input, '..', 'hf-out');
  const r1 = run('--out', hfOut);
  assert.equal(r1.status, 0, r1.stderr);
  assert.deepEqual(fs.readdirSync(hfOut).sort(), ['config.json', 'model.safetensors', 'prune.json']);
  assert.deepEqual(await layoutOf(hfOut), await layoutOf(input));
  const onnxOut = path.join(input, '..', 'onnx-out');
  const r2 = run('--out', onnxOut, '--format', 'onnx');
  assert.equal(r2.status, 0, r2.stderr);
  assert.ok(fs.existsSync(path.join(onnxOut, 'model.onnx')));
  assert.equal(await ppl(await loadModelGraph(resolveModel(onnxOut))), await ppl(await loadModelGraph(resolveModel(hfOut))));
  const r3 = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'symprune.mjs'), 'prune', '--model', onnxOut, '--method', 'magnitude', '--format', 'hf', '--out', path.join(input, '..', 'x')], { encoding: 'utf8' });
  assert.equal(r3.status, 2);
  assert.match(r3.stderr.trim(), /^symprune: --format hf: the input .* is ONNX/);
  assert.ok(!fs.existsSync(path.join(input, '..', 'x')), 'nothing written');
});
