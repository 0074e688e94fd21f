import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/schema.ts';
import { RunStore } from '../src/store/store.ts';
import { leaderboard, individualAtRank, featureRows, evaluationCounts } from '../src/store/queries.ts';
import { buildReport, formatReport, reportJson, reportSvg } from '../src/store/report.ts';
import { kendallTauB, spearman } from '../src/store/correlation.ts';
import { InputError } from '../src/errors.ts';

// A run whose perplexities are made to depend on one feature (use of G) and not on another (X).
function fill(path: string) {
  const db = openDatabase(path);
  const s = RunStore.create(db, { config: { population: 8, fitnessData: 'brown:search' }, seed: 3, modelPath: 'm.onnx', modelSha256: 'x', dataHashes: {}, versions: {} });
  let r = 12345;
  const rand = (): number => ((r = (r * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const truth: { id: number; usesG: number; usesX: number; short: number; full: number | null; size: number }[] = [];
  for (let id = 0; id < 60; id++) {
    const usesG = id % 2;
    const usesX = rand() < 0.5 ? 1 : 0;
    const size = 1 + Math.floor(rand() * 9);
    const short = (usesG ? 20 : 40) + rand() * 15;
    const fingerprint = id === 59 ? 'fp-1' : `fp-${id}`; // 59 has the same masks as 1
    s.addIndividual({
      id,
      infix: `t${id}`,
      tree: { data: `t${id}` },
      hash: `h${id}`,
      features: { size, depth: 1 + (size >> 1), terminals: { W: 1, G: usesG, X: usesX }, ops: { mul: usesG + usesX, sqrt: usesX } },
      parents: id > 1 ? [id - 1, id - 2] : [],
      origin: id < 8 ? 'init' : 'crossover',
      step: Math.max(0, id - 7),
      fingerprint,
    });
    if (id === 59) {
      const src = s.evaluation(1, 'short')!;
      s.addEvaluation({ individual: id, fidelity: 'short', tokens: 64, ppl: src.ppl, seconds: 0, worker: null, status: 'reused', reusedFrom: src.id });
      const f = s.evaluation(1, 'full');
      s.setFitness(id, f ? f.ppl! : src.ppl!, f ? 'full' : 'short');
      truth.push({ id, usesG, usesX, size, short: truth[1]!.short, full: truth[1]!.full });
      continue;
    }
    s.addEvaluation({ individual: id, fidelity: 'short', tokens: 64, ppl: short, seconds: 0.1, worker: id % 2, status: 'ok' });
    let full: number | null = null;
    if (short < 30) {
      full = short * 1.1 + rand();
      s.addEvaluation({ individual: id, fidelity: 'full', tokens: 256, ppl: full, seconds: 0.4, worker: id % 2, status: 'ok' });
    }
    s.setFitness(id, full ?? short, full === null ? 'short' : 'full');
    truth.push({ id, usesG, usesX, short, full, size });
  }
  s.addIndividual({ id: 60, infix: 'X', tree: { data: 'X' }, hash: 'h60', features: { size: 1, depth: 1, terminals: { W: 0, G: 0, X: 1 }, ops: {} }, parents: [], origin: 'init', step: 0, invalid: 'shape [1,in], not [out,in]' });
  s.addIndividual({ id: 61, infix: 'G', tree: { data: 'G' }, hash: 'h61', features: { size: 1, depth: 1, terminals: { W: 0, G: 1, X: 0 }, ops: {} }, parents: [], origin: 'init', step: 0 });
  s.addEvaluation({ individual: 61, fidelity: 'short', tokens: 64, ppl: null, seconds: 5, worker: 0, status: 'timeout', error: 'timed out after 5 s' });
  s.setFitness(61, Infinity, null);
  s.addMaskDuplicate({ hash: 'hdup', infix: 'sqrt(t1)', fingerprint: 'fp-1', step: 9 });
  s.addMaskDuplicate({ hash: 'hdup', infix: 'sqrt(t1)', fingerprint: 'fp-1', step: 9 }); // a replay records it once
  for (let step = 0; step <= 52; step++) s.addProgress({ step, evaluations: step + 8, individuals: step + 8, best: 30 - step * 0.1, median: step === 3 ? null : 45 - step * 0.2, elapsed: step });
  s.addBaseline({ method: 'magnitude', pattern: 'unstructured', sparsity: 0.5, split: 'brown:search', tokens: 256, ppl: 80, seconds: 1 });
  s.addBaseline({ method: 'wanda', pattern: 'unstructured', sparsity: 0.5, split: 'brown:search', tokens: 256, ppl: 25, seconds: 1 });
  s.setStatus('finished');
  return { db, s, truth };
}

test('leaderboard: best first, one row per mask, equivalents counted', () => {
  const { db, s, truth } = fill(join(mkdtempSync(join(tmpdir(), 'symprune-rep-')), 'r.sqlite'));
  const board = leaderboard(db, s.runId, 100);
  const distinct = truth.filter((t) => t.id !== 59);
  assert.equal(board.length, distinct.length); // 59 shares 1's masks; 60 invalid; 61 timed out
  for (let i = 1; i < board.length; i++) assert.ok(board[i - 1]!.fitness <= board[i]!.fitness);
  const expectBest = distinct.reduce((a, b) => ((a.full ?? a.short) <= (b.full ?? b.short) ? a : b));
  assert.equal(board[0]!.id, expectBest.id);
  assert.equal(board.find((b) => b.id === 1)!.equivalents, 1);
  assert.equal(individualAtRank(db, 'r.sqlite', s.runId, 2).id, board[1]!.id);
  assert.throws(() => individualAtRank(db, 'r.sqlite', s.runId, 500), (e: unknown) => e instanceof InputError && /no rank 500/.test(e.message));
  const counts = evaluationCounts(db, s.runId);
  assert.equal(counts.paid.short, 59);
  assert.equal(counts.paid.full, truth.filter((t) => t.id !== 59 && t.full !== null).length);
  assert.equal(counts.reused, 1);
  assert.equal(counts.maskDuplicates, 1);
  assert.equal(counts.failed.timeout, 1);
  assert.equal(counts.invalid, 1);
  db.close();
});

test('report correlations equal direct computations and principles follow the data', () => {
  const { db, s, truth } = fill(join(mkdtempSync(join(tmpdir(), 'symprune-rep-')), 'r.sqlite'));
  const rows = featureRows(db, s.runId);
  assert.equal(rows.length, 60); // 59 paid + 1 reused; invalid and timed-out excluded
  const rep = buildReport(db, 'r.sqlite');
  const ppl = truth.map((t) => t.short);
  const g = rep.correlations.features.find((f) => f.feature === 'uses_G')!;
  assert.equal(g.spearman.r, spearman(truth.map((t) => t.usesG), ppl).r);
  assert.equal(g.kendall.r, kendallTauB(truth.map((t) => t.usesG), ppl).r);
  assert.ok(g.spearman.r < -0.7, `G strongly lowers ppl here: ${g.spearman.r}`);
  const size = rep.correlations.features.find((f) => f.feature === 'size')!;
  assert.equal(size.spearman.r, spearman(truth.map((t) => t.size), ppl).r);
  const pairs = truth.filter((t) => t.full !== null && t.id !== 59); // the reused one is not a paid pair
  assert.equal(rep.correlations.fidelity!.spearman.n, pairs.length);
  assert.equal(rep.correlations.fidelity!.spearman.r, spearman(pairs.map((t) => t.short), pairs.map((t) => t.full!)).r);
  assert.match(rep.principles.join('\n'), /Trees using G reach lower perplexity \(Spearman rho=-0\.\d\d/);
  assert.doesNotMatch(rep.principles.join('\n'), /using X|using W/); // X is noise here, W is constant
  assert.match(rep.principles.join('\n'), /The short budget ranks candidates/);
  const best = rep.leaderboard.find((b) => b.fullPpl !== null)!;
  const beatsWanda = best.fullPpl! < 25;
  assert.match(rep.principles.join('\n'), beatsWanda ? /beats every baseline/ : /not wanda 25\.00/);
  assert.deepEqual(
    rep.combined.map((c) => c.ppl),
    [...rep.combined.map((c) => c.ppl)].sort((a, b) => a - b),
  );
  const text = formatReport(rep);
  assert.match(text, /^run 1 in r\.sqlite: finished/);
  assert.match(text, /magnitude/);
  const json = reportJson(rep);
  assert.doesNotMatch(json, /Infinity|NaN/);
  assert.equal(JSON.parse(json).leaderboard[0].id, rep.leaderboard[0]!.id);
  const svg = reportSvg(rep);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  const polylines = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) => m[1]!.split(' ').length);
  // best: 53 points in one line; median: a gap at step 3 splits it into 3 + 49.
  assert.deepEqual(polylines, [53, 3, 49]);
  assert.match(svg, />wanda 25.00</);
  db.close();
});

test('a report on a run without evaluations says so instead of inventing findings', () => {
  const db = openDatabase(join(mkdtempSync(join(tmpdir(), 'symprune-rep-')), 'e.sqlite'));
  RunStore.create(db, { config: {}, seed: 1, modelPath: 'm', modelSha256: 'x', dataHashes: {}, versions: {} });
  const rep = buildReport(db, 'e.sqlite');
  assert.deepEqual(rep.leaderboard, []);
  assert.deepEqual(rep.principles, ['Too few evaluated trees (0) to say which features matter.']);
  assert.match(reportSvg(rep), /no data yet/);
  db.close();
});

test('PNG plot: valid chunks and CRCs, the curve drawn in its colour on white', async () => {
  const { inflateSync } = await import('node:zlib');
  const { crc32 } = await import('../src/store/plot-png.ts');
  const { fontTable } = await import('../src/store/font5x8.ts');
  const { reportPng } = await import('../src/store/report.ts');
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926); // the CRC-32 check value
  for (const [ch, g] of Object.entries(fontTable())) {
    const rows = g.split(' ');
    assert.equal(rows.length, 8, `glyph ${ch}`);
    for (const r of rows) assert.match(r, /^[.#]{5}$/, `glyph ${ch}`);
  }
  const { db } = fill(join(mkdtempSync(join(tmpdir(), 'symprune-rep-')), 'r.sqlite'));
  const png = reportPng(buildReport(db, 'r.sqlite'));
  db.close();
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let off = 8;
  const chunks: { type: string; data: Buffer }[] = [];
  while (off < png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    assert.equal(png.readUInt32BE(off + 8 + len), crc32(png.subarray(off + 4, off + 8 + len)), `${type} CRC`);
    chunks.push({ type, data });
    off += 12 + len;
  }
  assert.deepEqual(chunks.map((c) => c.type), ['IHDR', 'IDAT', 'IEND']);
  const w = chunks[0]!.data.readUInt32BE(0);
  const h = chunks[0]!.data.readUInt32BE(4);
  assert.deepEqual([w, h], [1440, 840]);
  const raw = inflateSync(chunks[1]!.data);
  assert.equal(raw.length, (3 * w + 1) * h);
  const px = (x: number, y: number) => [...raw.subarray(y * (3 * w + 1) + 1 + 3 * x, y * (3 * w + 1) + 4 + 3 * x)];
  assert.deepEqual(px(0, 0), [255, 255, 255]);
  let blue = 0;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (px(x, y).join() === '31,119,180') blue++;
  assert.ok(blue > 1000, `best curve pixels: ${blue}`);
});
