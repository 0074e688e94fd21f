/**
 * Calibration samples as given: a 2-D .npy [n, seqlen] is n windows used in order, as
 * Wanda's or Pruner-Zero's PyTorch loader saved them (not flattened and re-sampled).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsReader } from '../src/model/safetensors.ts';
import { loadModelGraph, resolveModel } from '../src/model/load.ts';
import { denseGradients, prunableLayers } from '../src/prune/prune-model.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { makeCheckpoint } from './support/hf-checkpoint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const c: LlamaConfig = { vocabSize: 41, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };

/** A version 1.0 .npy of int64 [rows, cols], written from the format's spec. */
function npyInt64(rows: number[][]): Buffer {
  let header = `{'descr': '<i8', 'fortran_order': False, 'shape': (${rows.length}, ${rows[0]!.length}), }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(pre);
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(BigInt64Array.from(rows.flat().map(BigInt)).buffer)]);
}

/** X of layer 0's q/k/v by hand: mean over samples of Σ_t (input_layernorm(embedding))², float64. */
function handX(w: Map<string, Float32Array>, rows: number[][]): Float64Array {
  const emb = w.get('model.embed_tokens.weight')!;
  const g = w.get('model.layers.0.input_layernorm.weight')!;
  const X = new Float64Array(c.dim);
  for (const row of rows) {
    for (const id of row) {
      const e = emb.subarray(id * c.dim, (id + 1) * c.dim);
      let ms = 0;
      for (const v of e) ms += v * v;
      const inv = 1 / Math.sqrt(ms / c.dim + c.normEps);
      for (let j = 0; j < c.dim; j++) X[j] += (e[j]! * inv * g[j]!) ** 2;
    }
  }
  return X.map((v) => v / rows.length);
}

test('stats on a 2-D .npy uses exactly its rows, in order; --nsamples takes the first rows; a different --seqlen is refused', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-npy-'));
  const model = path.join(dir, 'model');
  const w = await makeCheckpoint(model, c, { dtype: 'BF16' });
  const rows = Array.from({ length: 5 }, (_, r) => Array.from({ length: 12 }, (_, t) => (r * 7 + t * t * 3 + 1) % 41));
  const npy = path.join(dir, 'samples.npy');
  fs.writeFileSync(npy, npyInt64(rows));
  const stats = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'symprune.mjs'), 'stats', '--model', model, '--data', npy, '--threads', '1', ...args], { encoding: 'utf8' });

  const out = path.join(dir, 'all.safetensors');
  const r = stats('--out', out);
  assert.equal(r.status, 0, r.stderr);
  const file = await SafetensorsReader.open(out);
  const x = await file.readFloat32('model.layers.0.self_attn.q_proj.X');
  const want = handX(w, rows);
  for (let j = 0; j < c.dim; j++) assert.ok(Math.abs(x[j]! - want[j]!) <= 1e-5 * want[j]!, `X[${j}] ${x[j]} vs ${want[j]}`);
  // G on the same rows, computed in-process from windows built here.
  const graph = await loadModelGraph(resolveModel(model));
  const G = await denseGradients(graph, prunableLayers(graph), rows.map((row) => Int32Array.from(row)), { threads: 1 });
  const g = await file.readFloat32('model.layers.1.mlp.down_proj.G');
  const gw = G.get('model.layers.1.mlp.down_proj')!;
  for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i]! - gw[i]!) <= 1e-5 * Math.max(1e-3, Math.abs(gw[i]!)), `G[${i}] ${g[i]} vs ${gw[i]}`);
  await file.close();

  const first = path.join(dir, 'first3.safetensors');
  assert.equal(stats('--out', first, '--nsamples', '3').status, 0);
  const f3 = await SafetensorsReader.open(first);
  const x3 = await f3.readFloat32('model.layers.0.self_attn.k_proj.X');
  const want3 = handX(w, rows.slice(0, 3));
  for (let j = 0; j < c.dim; j++) assert.ok(Math.abs(x3[j]! - want3[j]!) <= 1e-5 * want3[j]!, `first 3 rows: X[${j}]`);
  await f3.close();

  for (const [args, re] of [
    [['--seqlen', '8'], /^symprune: --seqlen 8: .*samples\.npy holds samples of 12 tokens \(\[5, 12\]\)/],
    [['--nsamples', '6'], /^symprune: --nsamples 6: .*samples\.npy holds only 5 samples/],
  ] as const) {
    const bad = path.join(dir, 'bad.safetensors');
    const b = stats('--out', bad, ...args);
    assert.equal(b.status, 2, b.stderr);
    assert.match(b.stderr.trim(), re);
    assert.equal(b.stderr.trim().split('\n').length, 1);
    assert.ok(!fs.existsSync(bad), 'nothing written');
  }
});
