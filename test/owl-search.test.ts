/**
 * `search --allocation owl`: candidates and baselines are masked with OWL's per-block
 * sparsity. The run's Wanda baseline must equal Wanda + OWL pruned by `pruneModel`
 * (one-shot, as the search's statistics are) and evaluated on the same fitness tokens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { cloneModel } from '../src/onnx/graph-edit.ts';
import { structuredTokens } from './support/token-stream.ts';
import { baselineMethod } from '../src/prune/baselines.ts';
import { pruneModel } from '../src/prune/prune-model.ts';
import { parsePattern } from '../src/prune/score.ts';
import { loadCalibrationWindows } from '../src/prune/calibration-windows.ts';
import { CALIBRATION_SEED } from '../src/prune/calibration-windows.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';

test('search --allocation owl: the Wanda baseline of the run is Wanda + OWL', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'symprune-owl-search-'));
  try {
    const cfg = { vocabSize: 64, dim: 32, layers: 3, heads: 4, kvHeads: 2, ffn: 64, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };
    const model = buildLlama(cfg, initLlamaWeights(cfg, 1, 0.2));
    await saveModel(model, join(dir, 'model.onnx'));
    const fit = structuredTokens(4096, 1);
    writeFileSync(join(dir, 'fit.bin'), fit);
    writeFileSync(join(dir, 'calib.bin'), structuredTokens(4096, 2));
    const db = join(dir, 'run.sqlite');
    const args = ['search', '--model', dir, '--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'), '--nsamples', '8', '--seqlen', '32', '--seed', '5',
      '--population', '4', '--iterations', '0', '--batch', '2', '--workers', '1', '--eval-tokens', '2048', '--baselines', 'wanda', '--sparsity', '0.6', '--allocation', 'owl', '--owl-lambda', '0.1', '--db', db, '--json'];
    const r = spawnSync(process.execPath, ['bin/symprune.mjs', ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const d = new Database(db, { readonly: true });
    const base = d.prepare(`SELECT ppl FROM baselines WHERE method = 'wanda'`).get() as { ppl: number };
    const config = JSON.parse((d.prepare('SELECT config FROM runs').get() as { config: string }).config);
    d.close();
    assert.deepEqual(config.allocation, { kind: 'owl', m: 5, lambda: 0.1 });

    const windows = await loadCalibrationWindows({ data: join(dir, 'calib.bin'), nsamples: 8, seqlen: 32, seed: CALIBRATION_SEED, vocabSize: 64 });
    const pruned = cloneModel(model);
    const res = await pruneModel(pruned, { method: baselineMethod('wanda'), sparsity: 0.6, pattern: parsePattern('unstructured', 0.6), calibration: 'one-shot', allocation: { kind: 'owl', m: 5, lambda: 0.1 }, windows, threads: 1 });
    assert.ok(new Set(res.allocation.blocks.map((b) => b.sparsity.toFixed(6))).size > 1, 'blocks differ in sparsity');
    const ev = await PerplexityEvaluator.create(pruned, { threads: 1 });
    const p = await ev.evaluate(Int32Array.from(fit), { seqlen: 32, maxTokens: 2048 });
    await ev.release();
    assert.ok(Math.abs(base.ppl - p.ppl) < 1e-4 * p.ppl, `search baseline ${base.ppl} vs pruneModel ${p.ppl}`);
    const uniform = cloneModel(model);
    await pruneModel(uniform, { method: baselineMethod('wanda'), sparsity: 0.6, pattern: parsePattern('unstructured', 0.6), calibration: 'one-shot', windows, threads: 1 });
    const ev2 = await PerplexityEvaluator.create(uniform, { threads: 1 });
    const q = await ev2.evaluate(Int32Array.from(fit), { seqlen: 32, maxTokens: 2048 });
    await ev2.release();
    assert.ok(Math.abs(base.ppl - q.ppl) > 1e-3 * q.ppl, 'OWL changed the baseline');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
