/** `search --max-depth --max-size --operators --terminals`: the trees stay inside the space asked for. */
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
import { structuredTokens } from './support/token-stream.ts';
import { parseMetric } from '../src/search-space/parse.ts';
import { InputError } from '../src/errors.ts';
import { gpOptionsFromFlags } from '../src/cli/commands/search.ts';

test('flags to GP options; unknown names refused', () => {
  assert.equal(gpOptionsFromFlags({}), undefined);
  assert.deepEqual(gpOptionsFromFlags({ 'max-depth': 5, 'max-size': 9, operators: 'mul,sqrt, abs', terminals: 'W,X' }), { maxDepth: 5, maxSize: 9, terminals: ['W', 'X'], unaryOps: ['sqrt', 'abs'], binaryOps: ['mul'] });
  assert.throws(() => gpOptionsFromFlags({ terminals: 'W,Q' }), (e: unknown) => e instanceof InputError && /unknown terminal Q/.test(e.message));
  assert.throws(() => gpOptionsFromFlags({ operators: 'mul,frob' }), (e: unknown) => e instanceof InputError && /unknown operator frob/.test(e.message));
  assert.throws(() => gpOptionsFromFlags({ 'max-size': 0 }), InputError);
});

test('a search restricted to W, X and {mul, sqrt, abs, add} with size <= 9 makes only such trees', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'symprune-space-'));
  try {
    const cfg = { vocabSize: 64, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };
    await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 1, 0.2)), join(dir, 'model.onnx'));
    writeFileSync(join(dir, 'fit.bin'), structuredTokens(2048, 1));
    writeFileSync(join(dir, 'calib.bin'), structuredTokens(2048, 2));
    {
      const db = join(dir, 'run.sqlite');
      const r = spawnSync(process.execPath, ['bin/symprune.mjs', 'search', '--model', dir, '--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'), '--nsamples', '4', '--seqlen', '32',
        '--population', '8', '--iterations', '6', '--batch', '2', '--workers', '1', '--eval-tokens', '512', '--baselines', 'none', '--max-depth', '5', '--max-size', '9', '--operators', 'mul,sqrt,abs,add', '--terminals', 'W,X', '--db', db, '--json'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const d = new Database(db, { readonly: true });
      const config = JSON.parse((d.prepare('SELECT config FROM runs').get() as { config: string }).config);
      const rows = d.prepare('SELECT infix, size, depth FROM individuals').all() as { infix: string; size: number; depth: number }[];
      d.close();
      assert.deepEqual(config.gp, { maxDepth: 5, maxSize: 9, terminals: ['W', 'X'], unaryOps: ['sqrt', 'abs'], binaryOps: ['mul', 'add'] });
      assert.ok(rows.length >= 8);
      const seen = new Set<string>();
      const walk = (t: { op: string; args: unknown[] }): void => {
        seen.add(t.op);
        for (const c of t.args) walk(c as { op: string; args: unknown[] });
      };
      for (const row of rows) {
        assert.ok(row.size <= 9 && row.depth <= 5, `${row.infix}: size ${row.size}, depth ${row.depth}`);
        walk(parseMetric(row.infix) as unknown as { op: string; args: unknown[] });
      }
      // OOS simplification rewrites mul(x, x) as sqr(x) whatever the operator set (the GP engine's
      // simplifier is not restricted by it); every other operator must come from the list.
      for (const op of seen) assert.ok(['W', 'X', 'mul', 'sqrt', 'abs', 'add', 'sqr'].includes(op), `${op} used`);
      assert.ok(!seen.has('G'));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
