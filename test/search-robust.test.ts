/**
 * Robust fitness: a search over two settings (60% unstructured and 2:4) on a tiny LLaMA built
 * on the fly, with real worker threads, onnxruntime and SQLite. Each candidate's fitness must
 * be the geometric mean of the perplexities the same tree gets in one-setting runs at each
 * setting (same seed, same data), the baselines likewise; and a candidate whose masks equal an
 * earlier one's at one setting only takes that setting's perplexity from it and pays the other.
 */
import { searchFixture } from './support/search-fixture.ts';
import { sympruneSync } from './support/spawn-cli.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverLayers, readLayerWeight } from '../src/prune/discover.ts';
import { writeStatsFile } from '../src/prune/stats-file.ts';
import { runSearch, type RequestedSettings } from '../src/search/run.ts';
import { settingsFields } from '../src/search/settings.ts';
import { openDatabase } from '../src/store/schema.ts';
import { baselineRows, baselines, featureRows, fidelityPairs, leaderboard } from '../src/store/queries.ts';
import type { BaselineInput } from '../src/store/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-robust-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const { model, ready: files } = searchFixture(dir, { fitTokens: 4096, calibTokens: 2048 });

const ready = (async () => {
  await files;
  // G = |W| + (1 + its group of 4 inputs): within every N:M group G orders weights as |W|
  // does (the trees W and G prune alike at 2:4), across a row it orders them by group (they
  // prune differently when unstructured).
  const layers = discoverLayers(model);
  const byName = new Map(layers.map((l) => [l.name, l]));
  writeStatsFile(join(dir, 'stats.safetensors'), layers, (l) => {
    const w = readLayerWeight(model, byName.get(l.name)!);
    const G = new Float32Array(l.out * l.in);
    for (let r = 0; r < l.out; r++) for (let c = 0; c < l.in; c++) G[r * l.in + c] = Math.abs(w[r * l.in + c]!) + (1 + Math.floor(c / 4));
    return { G, X: Float32Array.from({ length: l.in }, (_, c) => 1 + (c % 5) * 0.3) };
  });
})();

/** Trees whose masks differ at both settings (none is a mask duplicate in any run), and a pair that share their 2:4 masks. */
const DISTINCT = ['W', 'mul(W,sqrt(X))', 'mul(W,X)', 'add(mul(W,sqrt(X)),mul(W,G))'];
const SHARING = ['W', 'mul(W,sqrt(X))', 'G'];
const TWO = [{ sparsity: 0.6, pattern: 'unstructured' }, { sparsity: 0.5, pattern: '2:4' }];

async function search(name: string, settings: RequestedSettings, seeds: string[], baselines = ['magnitude', 'wanda']): Promise<string> {
  const db = join(dir, `${name}.sqlite`);
  const sum = await runSearch({
    db,
    model: { modelPath: join(dir, 'model.onnx') },
    settings: {
      ...settings,
      fitnessData: join(dir, 'fit.bin'),
      calibData: join(dir, 'calib.bin'),
      stats: join(dir, 'stats.safetensors'),
      nsamples: 4,
      seqlen: 32,
      seed: 3,
      population: seeds.length,
      batch: 1,
      iterations: 0,
      evalTokens: 1024,
      shortFraction: 0.25,
      // A margin this wide sends every candidate to the full budget, where fitness is a measured perplexity.
      margin: 1e6,
      baselines,
    },
    gp: { seeds },
    workers: 1,
  });
  assert.equal(sum.status, 'finished');
  return db;
}

interface Ind {
  id: number;
  hash: string;
  infix: string;
  fitness: number;
  fidelity: string | null;
  fingerprint: string | null;
}

interface EvalRow {
  id: number;
  individual: number;
  setting: string;
  fidelity: string;
  ppl: number | null;
  status: string;
  fingerprint: string | null;
  reused_from: number | null;
}

interface RunView {
  inds: Map<string, Ind>;
  evals: EvalRow[];
  base: BaselineInput[];
  rows: BaselineInput[];
}

function read(db: string): RunView {
  const d = openDatabase(db, { readonly: true });
  try {
    const inds = new Map((d.prepare('SELECT id, hash, infix, fitness, fidelity, fingerprint FROM individuals ORDER BY id').all() as Ind[]).map((i) => [i.hash, i]));
    const evals = d.prepare('SELECT * FROM evaluations ORDER BY id').all() as EvalRow[];
    return { inds, evals, base: baselines(d, 1), rows: baselineRows(d, 1) };
  } finally {
    d.close();
  }
}

const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) <= 1e-9 * Math.abs(b), `${what}: ${a} vs ${b}`);

test('the fitness over two settings is the geometric mean of the one-setting runs, candidates and baselines alike', async () => {
  await ready;
  const multi = read(await search('two', settingsFields(TWO), DISTINCT));
  const one: RunView[] = [];
  for (const [i, x] of TWO.entries()) one.push(read(await search(`one-${i}`, settingsFields([x]), DISTINCT)));

  let compared = 0;
  for (const [hash, m] of multi.inds) {
    const a = one[0]!.inds.get(hash);
    const b = one[1]!.inds.get(hash);
    if (!a || !b || !Number.isFinite(m.fitness)) continue;
    assert.equal(m.fidelity, 'full');
    close(m.fitness, Math.exp((Math.log(a.fitness) + Math.log(b.fitness)) / 2), m.infix);
    // Each setting's evaluation is the one-setting run's, at the same budget.
    for (const [s, label] of ['0.6:unstructured', '2:4'].entries()) {
      const mine = multi.evals.find((e) => e.individual === m.id && e.setting === label && e.fidelity === 'full')!;
      const same: Ind = s === 0 ? a : b;
      const theirs: EvalRow = one[s]!.evals.find((e) => e.individual === same.id && e.fidelity === 'full')!;
      assert.equal(theirs.setting, label);
      close(mine.ppl!, theirs.ppl!, `${m.infix} at ${label}`);
    }
    compared++;
  }
  assert.equal(compared, DISTINCT.length, 'every seed in all three runs');

  // Baselines: one row per setting, equal to the one-setting runs', and their geometric mean.
  for (const method of ['magnitude', 'wanda']) {
    const per = TWO.map((x, s): number => {
      const mine = multi.rows.find((b) => b.method === method && b.pattern === x.pattern && b.sparsity === x.sparsity)!;
      const theirs: BaselineInput = one[s]!.rows.find((b) => b.method === method)!;
      close(mine.ppl!, theirs.ppl!, `${method} at ${x.pattern}`);
      return mine.ppl!;
    });
    const g = multi.base.find((b) => b.method === method)!;
    assert.equal(g.pattern, 'geomean');
    close(g.ppl!, Math.sqrt(per[0]! * per[1]!), `${method} geometric mean`);
    assert.equal(one[0]!.base.find((b) => b.method === method)!.pattern, 'unstructured', 'a one-setting run lists its baselines as before');
  }
  assert.equal(multi.base.filter((b) => b.method !== 'dense').length, 2, 'the fitness view lists each method once');

  // The report's views give one row per individual, its perplexities over both settings.
  const d = openDatabase(join(dir, 'two.sqlite'), { readonly: true });
  try {
    const geo = (id: number, fidelity: string): number => {
      const xs = multi.evals.filter((e) => e.individual === id && e.fidelity === fidelity).map((e) => e.ppl!);
      assert.equal(xs.length, 2);
      return Math.sqrt(xs[0]! * xs[1]!);
    };
    for (const r of leaderboard(d, 1, 10)) {
      close(r.fullPpl!, r.fitness, `leaderboard ${r.infix}`);
      close(r.shortPpl!, geo(r.id, 'short'), `leaderboard short ${r.infix}`);
    }
    const rows = featureRows(d, 1);
    assert.equal(new Set(rows.map((r) => r.id)).size, rows.length, 'one feature row per individual');
    for (const r of rows) close(r.ppl, geo(r.id, 'short'), `feature row ${r.id}`);
    for (const p of fidelityPairs(d, 1)) close(p.full, geo(p.id, 'full'), `fidelity pair ${p.id}`);
  } finally {
    d.close();
  }
});

test('equal masks at one setting: that perplexity is taken from the earlier candidate, the other setting paid', async () => {
  await ready;
  const run = read(await search('reuse', settingsFields(TWO), SHARING));
  const W = [...run.inds.values()].find((i) => i.infix === 'W')!;
  const G = [...run.inds.values()].find((i) => i.infix === 'G')!;
  assert.ok(W && G, 'both seeds were evaluated');
  assert.notEqual(W.fingerprint, G.fingerprint, 'W and G are different candidates over both settings');
  const at = (id: number, setting: string) => run.evals.find((e) => e.individual === id && e.setting === setting && e.fidelity === 'full')!;
  // 2:4: equal masks, so G reuses W's perplexity; unstructured: different masks, paid.
  const g24 = at(G.id, '2:4');
  const w24 = at(W.id, '2:4');
  assert.equal(g24.fingerprint, w24.fingerprint);
  assert.equal(g24.status, 'reused');
  assert.equal(g24.reused_from, w24.id);
  assert.equal(g24.ppl, w24.ppl);
  const gU = at(G.id, '0.6:unstructured');
  assert.notEqual(gU.fingerprint, at(W.id, '0.6:unstructured').fingerprint);
  assert.equal(gU.status, 'ok');
  close(G.fitness, Math.sqrt(g24.ppl! * gU.ppl!), 'G fitness');
  // Every reuse in the run is of equal masks at the same setting and budget, from an earlier individual.
  const reused = run.evals.filter((e) => e.status === 'reused');
  assert.ok(reused.length >= 1);
  for (const e of reused) {
    const src = run.evals.find((x) => x.id === e.reused_from)!;
    assert.equal(src.setting, e.setting);
    assert.equal(src.fidelity, e.fidelity);
    assert.equal(src.fingerprint, e.fingerprint);
    assert.ok(src.individual < e.individual);
  }
});

test('the CLI over two settings: --sparsity x --pattern, report, export, and a resume that names other settings refused', async () => {
  await ready;
  const db = join(dir, 'cli.sqlite');
  const cli = (args: string[]) => sympruneSync(args);
  const flags = ['--sparsity', '0.6', '--pattern', 'unstructured,2:4'];
  const r = cli(['search', '--model', join(dir, 'model.onnx'), '--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'), '--stats', join(dir, 'stats.safetensors'), '--nsamples', '4', '--seqlen', '32',
    '--population', '4', '--iterations', '2', '--batch', '2', '--workers', '1', '--eval-tokens', '512', '--baselines', 'magnitude,sparsegpt', ...flags, '--db', db, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.settings, ['0.6:unstructured', '2:4']);
  const d = openDatabase(db, { readonly: true });
  const config = JSON.parse(d.prepare('SELECT config FROM runs').pluck().get() as string);
  const perSetting = d.prepare(`SELECT setting, COUNT(*) n FROM evaluations WHERE fidelity = 'short' GROUP BY setting ORDER BY setting`).all();
  const sgpt = baselineRows(d, 1).filter((b) => b.method === 'sparsegpt');
  d.close();
  assert.deepEqual(config.settings, [{ sparsity: 0.6, pattern: 'unstructured' }, { sparsity: 0.5, pattern: '2:4' }]);
  assert.equal(config.sparsity, 0.6);
  assert.equal((perSetting as { n: number }[])[0]!.n, (perSetting as { n: number }[])[1]!.n, 'each candidate measured at both settings');
  assert.equal(sgpt.length, 2, 'SparseGPT at each setting');
  assert.ok(sgpt.every((b) => b.ppl !== null && b.ppl > 0));

  const rep = cli(['report', '--db', db]);
  assert.equal(rep.status, 0, rep.stderr);
  assert.match(rep.stdout, /the geometric mean over the settings 0\.6:unstructured, 2:4/);
  assert.match(rep.stdout, /baselines at each setting\nmethod\s+0\.6:unstructured\s+2:4/);
  const exp = cli(['export', '--db', db, '--format', 'json', '--out', join(dir, 'best.json')]);
  assert.equal(exp.status, 0, exp.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'best.json'), 'utf8')).search.settings, ['0.6:unstructured', '2:4']);

  // A resume may repeat the settings, not change them.
  const again = cli(['search', '--db', db, '--resume', ...flags, '--json']);
  assert.equal(again.status, 0, again.stderr);
  const other = cli(['search', '--db', db, '--resume', '--sparsity', '0.6', '--json']);
  assert.equal(other.status, 2);
  assert.match(other.stderr, /^symprune: --resume: --settings one setting \(the run has 0\.6:unstructured,2:4\)/);
});

test('OWL over two sparsities: each setting gets its own allocation, as a run of that setting alone', async () => {
  await ready;
  const owl = { allocation: { kind: 'owl' as const, m: 5, lambda: 0.1 } };
  const both = [{ sparsity: 0.5, pattern: 'unstructured' }, { sparsity: 0.7, pattern: 'unstructured' }];
  const multi = read(await search('owl-two', { ...settingsFields(both), ...owl }, ['W', 'mul(W,sqrt(X))'], ['wanda']));
  const one = read(await search('owl-one', { ...settingsFields([both[1]!]), ...owl }, ['W', 'mul(W,sqrt(X))'], ['wanda']));
  const at = (v: RunView, label: string) => v.evals.filter((e) => e.setting === label && e.fidelity === 'full').map((e) => e.ppl);
  assert.deepEqual(at(multi, '0.7:unstructured'), at(one, '0.7:unstructured'));
  close(multi.rows.find((b) => b.method === 'wanda' && b.sparsity === 0.7)!.ppl!, one.rows.find((b) => b.method === 'wanda')!.ppl!, 'wanda+OWL at 0.7');
  assert.notEqual(multi.rows.find((b) => b.method === 'wanda' && b.sparsity === 0.5)!.ppl, multi.rows.find((b) => b.method === 'wanda' && b.sparsity === 0.7)!.ppl);
});
