import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/schema.ts';
import { RunStore } from '../src/store/store.ts';
import { treeFeatures } from '../src/store/features.ts';
import { exportMetric } from '../src/store/export.ts';
import { parseMetric } from '../src/search-space/parse.ts';
import { toInfix, toPrunerZeroJson } from '../src/search-space/print.ts';
import { treeEquals } from '../src/search-space/tree.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-export-'));
const dbPath = join(dir, 'e.sqlite');
const metrics = ['mul(abs(mul(W,W)),mms(G))', 'mul(W,sqrt(X))', 'W', 'add(mul(W,sqrt(X)),mul(W,G))'];
const ppls = [20.5, 21.25, 40, 19.75];
{
  const db = openDatabase(dbPath);
  const s = RunStore.create(db, { config: { sparsity: 0.5, pattern: 'unstructured', fitnessData: 'brown:search' }, seed: 7, modelPath: 'm.onnx', modelSha256: 'abc', dataHashes: {}, versions: {} });
  metrics.forEach((m, id) => {
    const t = parseMetric(m);
    s.addIndividual({ id, infix: toInfix(t), tree: toPrunerZeroJson(t), hash: `h${id}`, features: treeFeatures(t), parents: [], origin: 'seed', step: 0, fingerprint: `f${id}` });
    s.addEvaluation({ individual: id, fidelity: 'short', tokens: 10, ppl: ppls[id]! + 1, seconds: 0, worker: 0, status: 'ok' });
    s.addEvaluation({ individual: id, fidelity: 'full', tokens: 40, ppl: ppls[id]!, seconds: 0, worker: 0, status: 'ok' });
    s.setFitness(id, ppls[id]!, 'full');
  });
  db.close();
}

test('tree features count nodes, depth, terminals and operators', () => {
  const f = treeFeatures(parseMetric('mul(abs(mul(W,W)),mms(G))'));
  assert.deepEqual(f, { size: 7, depth: 3, terminals: { W: 2, G: 1, X: 0 }, ops: { mul: 2, abs: 1, mms: 1 } });
});

test('every machine-readable export format reads back as the same tree', () => {
  const db = openDatabase(dbPath, { readonly: true });
  // Rank 1 is the lowest perplexity (gblm's tree, 19.75), rank 2 Pruner-Zero's (20.5).
  for (const [rank, metric] of [[1, metrics[3]!], [2, metrics[0]!]] as const) {
    for (const format of ['json', 'pruner-zero', 'infix'] as const) {
      const e = exportMetric(db, dbPath, { rank, format });
      assert.ok(treeEquals(parseMetric(e.text), parseMetric(metric)), `${format} rank ${rank}: ${e.text}`);
    }
  }
  const j = JSON.parse(exportMetric(db, dbPath, { rank: 1, format: 'json' }).text);
  assert.equal(j.fitness.ppl, 19.75);
  assert.equal(j.search.seed, 7);
  assert.match(exportMetric(db, dbPath, { rank: 2, format: 'latex' }).text, /^% symprune run 1, rank 2: mul\(abs\(mul\(W,W\)\),mms\(G\)\)\n\$.+\$\n$/);
  db.close();
});

test('export and report CLI: files written, bad input exits 2 with one line', () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/symprune.mjs', ...args], { encoding: 'utf8' });
  const out = join(dir, 'best.json');
  const r = cli('export', '--db', dbPath, '--format', 'pruner-zero', '--out', out, '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim()).infix, metrics[3]);
  assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), toPrunerZeroJson(parseMetric(metrics[3]!)));
  const bad = cli('export', '--db', dbPath, '--rank', '9', '--format', 'infix', '--out', join(dir, 'x.txt'));
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.match(bad.stderr, /run 1 has 4 evaluated individuals with distinct masks, no rank 9/);
  const corrupt = join(dir, 'corrupt.sqlite');
  writeFileSync(corrupt, 'garbage'.repeat(100));
  const c = cli('report', '--db', corrupt);
  assert.equal(c.status, 2);
  assert.equal(c.stderr.trim(), `symprune: ${corrupt}: not a symprune database (file is not a database)`);
  const svg = join(dir, 'curve.svg');
  const rep = cli('report', '--db', dbPath, '--json', '--plot', svg);
  assert.equal(rep.status, 0, rep.stderr);
  assert.equal(JSON.parse(rep.stdout).leaderboard[0].infix, metrics[3]);
  assert.match(readFileSync(svg, 'utf8'), /^<svg/);
  const png = join(dir, 'curve.png');
  assert.equal(cli('report', '--db', dbPath, '--plot', png).status, 0);
  assert.deepEqual([...readFileSync(png).subarray(1, 4)], [0x50, 0x4e, 0x47]);
  const pdf = cli('report', '--db', dbPath, '--plot', join(dir, 'curve.pdf'));
  assert.equal(pdf.status, 2);
  assert.match(pdf.stderr, /--plot .*curve\.pdf: expected a file name ending in \.svg or \.png/);
});
