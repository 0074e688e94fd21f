/**
 * `symprune search --stats FILE`: statistics computed elsewhere (here by `symprune stats`)
 * replace the search's own calibration, and a file that does not fit the model is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { structuredTokens } from './support/token-stream.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-search-stats-'));
const cfg = { vocabSize: 64, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };

function cli(args: string[]) {
  return spawnSync(process.execPath, ['bin/symprune.mjs', ...args], { encoding: 'utf8' });
}

function fitnesses(db: string): unknown[] {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare('SELECT infix, fitness FROM individuals ORDER BY id').all();
  } finally {
    d.close();
  }
}

test('search --stats: a stats file from `symprune stats` gives the run its own statistics would; a mismatched file is refused', async () => {
  const modelDir = join(dir, 'tiny');
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 3, 0.2)), join(modelDir, 'model.onnx'));
  const other = { ...cfg, dim: 48, ffn: 96 };
  await saveModel(buildLlama(other, initLlamaWeights(other, 4, 0.2)), join(dir, 'other', 'model.onnx'));
  writeFileSync(join(dir, 'fit.bin'), structuredTokens(4096, 1));
  writeFileSync(join(dir, 'calib.bin'), structuredTokens(2048, 2));
  const calib = ['--data', join(dir, 'calib.bin'), '--nsamples', '4', '--seqlen', '32'];

  const stats = join(dir, 'tiny.stats.safetensors');
  const s = cli(['stats', '--model', modelDir, ...calib, '--out', stats]);
  assert.equal(s.status, 0, s.stderr);
  const otherStats = join(dir, 'other.stats.safetensors');
  const o = cli(['stats', '--model', join(dir, 'other'), ...calib, '--out', otherStats]);
  assert.equal(o.status, 0, o.stderr);

  const search = (db: string, extra: string[]) =>
    cli(['search', '--model', modelDir, '--fitness-data', join(dir, 'fit.bin'), ...calib, '--seed', '2', '--population', '6', '--iterations', '4', '--eval-tokens', '512', '--baselines', 'none', '--workers', '1', '--db', db, '--json', ...extra]);
  const own = search(join(dir, 'own.sqlite'), []);
  assert.equal(own.status, 0, own.stderr);
  const given = search(join(dir, 'given.sqlite'), ['--stats', stats]);
  assert.equal(given.status, 0, given.stderr);
  assert.ok(!existsSync(join(dir, 'given.stats.safetensors')), 'a run with --stats writes no statistics cache');
  assert.deepEqual(fitnesses(join(dir, 'given.sqlite')), fitnesses(join(dir, 'own.sqlite')));

  const bad = search(join(dir, 'bad.sqlite'), ['--stats', otherStats]);
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, /other\.stats\.safetensors: .*shape/);
});
