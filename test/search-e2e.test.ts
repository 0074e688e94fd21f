/**
 * `symprune search` end to end on a tiny LLaMA built on the fly: real worker threads,
 * real onnxruntime sessions, a real SQLite file. The run is SIGKILLed part way, resumed,
 * and compared with an uninterrupted run of the same seed.
 */
import { searchFixture } from './support/search-fixture.ts';
import { sympruneSync } from './support/spawn-cli.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { structuredTokens } from './support/token-stream.ts';
import { encodeModel } from '../src/onnx/proto.ts';
import { discoverLayers, readLayerWeight } from '../src/prune/discover.ts';
import { EvalPool, shared } from '../src/eval/pool.ts';
import type { WorkerInit } from '../src/eval/worker.ts';
import { parseMetric } from '../src/search-space/parse.ts';
import { assertConsistent, dump, sameSearch, searchKilledAt } from './support/search-log.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-search-'));
const { model, ready } = searchFixture(dir, { fitTokens: 8192, calibTokens: 4096 });

const base = ['--model', dir, '--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'), '--nsamples', '8', '--seqlen', '32', '--seed', '5'];
const searchArgs = (db: string, extra: string[] = []) => ['search', ...base, '--population', '10', '--eval-tokens', '4096', '--iterations', '24', '--batch', '2', '--db', db, '--json', ...extra];

const cli = sympruneSync;

test('a search killed with SIGKILL and resumed loses nothing and matches an uninterrupted run', async () => {
  await ready;
  // Reference: uninterrupted, with one worker.
  const refDb = join(dir, 'ref.sqlite');
  const ref = cli(searchArgs(refDb, ['--workers', '1']));
  assert.equal(ref.status, 0, ref.stderr);
  const summary = JSON.parse(ref.stdout.trim().split('\n').pop()!);
  assert.equal(summary.status, 'finished');
  assert.ok(summary.evaluations.short > 10 && summary.evaluations.full > 0, JSON.stringify(summary));
  const refLog = dump(refDb);
  assertConsistent(refLog);
  assert.ok(refLog.individuals.length >= 24 + 10 - 2, `individuals: ${refLog.individuals.length}`);
  assert.ok(refLog.baselines.length >= 7, 'dense and the baselines are stored');
  assert.ok(refLog.individuals.some((r) => r.fidelity === 'short') && refLog.individuals.some((r) => r.fidelity === 'full'), 'both fidelities occur');

  // Interrupted: two workers, SIGKILL once some candidate evaluations are committed.
  const db = join(dir, 'killed.sqlite');
  const atKill = await searchKilledAt(searchArgs(db, ['--workers', '2']), db, 12);
  assert.ok(atKill, 'the run reached 12 evaluations before it finished');
  assert.equal(atKill.runs[0]!.status, 'running');
  assert.ok(atKill.progress.length < refLog.progress.length, 'killed part way');

  const again = cli(searchArgs(db, ['--workers', '2']));
  assert.equal(again.status, 2, 'a database holding a run needs --resume');
  assert.match(again.stderr, /already holds run 1 with this configuration \(running\); pass --resume/);

  const res = cli(['search', '--db', db, '--resume', '--json', '--workers', '2']);
  assert.equal(res.status, 0, res.stderr);
  const after = dump(db);
  assertConsistent(after);
  // Nothing finished before the kill was lost or changed.
  for (const e of atKill.evaluations) assert.deepEqual(after.evaluations.find((x) => x.id === e.id), e);
  // The same search as the uninterrupted one: same individuals, masks and fitness.
  sameSearch(after, refLog);

  // Resuming a finished run does nothing more.
  const done = cli(['search', '--db', db, '--resume', '--json']);
  assert.equal(done.status, 0, done.stderr);
  assert.equal(dump(db).evaluations.length, after.evaluations.length);

  // report and export read it.
  const rep = cli(['report', '--db', db, '--json', '--plot', join(dir, 'plot.svg')]);
  assert.equal(rep.status, 0, rep.stderr);
  const report = JSON.parse(rep.stdout);
  assert.equal(report.leaderboard[0].fitness, Math.min(...after.individuals.map((r) => r.fitness as number)));
  assert.equal(report.curve.length, after.progress.length);
  const out = join(dir, 'best.json');
  const ex = cli(['export', '--db', db, '--format', 'json', '--out', out]);
  assert.equal(ex.status, 0, ex.stderr);
  assert.equal(JSON.parse(readFileSync(out, 'utf8')).infix, report.leaderboard[0].infix);
});

test('bad --db inputs and a changed configuration: one line, exit 2, nothing touched', async () => {
  await ready;
  const db = join(dir, 'small.sqlite');
  const small = (extra: string[] = []) => ['search', ...base, '--eval-tokens', '512', '--iterations', '2', '--population', '4', '--baselines', 'none', '--workers', '1', '--db', db, '--json', ...extra];
  const first = cli(small());
  assert.equal(first.status, 0, first.stderr);
  const before = dump(db);
  const diff = cli(small(['--sparsity', '0.6']));
  assert.equal(diff.status, 2);
  assert.equal(diff.stderr.trim().split('\n').length, 1, diff.stderr);
  assert.match(diff.stderr, /holds run 1 with a different configuration \(--sparsity 0\.6 \(the run has 0\.5\)\); pass --resume to continue that run or use another --db/);
  const diffResume = cli(['search', '--db', db, '--resume', '--population', '7']);
  assert.equal(diffResume.status, 2);
  assert.match(diffResume.stderr, /--resume: --population 7 \(the run has 4\)/);
  assert.deepEqual(dump(db), before);

  const corrupt = join(dir, 'corrupt.sqlite');
  const junk = Buffer.from('not sqlite '.repeat(50));
  writeFileSync(corrupt, junk);
  const c = cli(small().map((a) => (a === db ? corrupt : a)));
  assert.equal(c.status, 2);
  assert.equal(c.stderr.trim(), `symprune: ${corrupt}: not a symprune database (file is not a database)`);
  assert.deepEqual(readFileSync(corrupt), junk);

  const blocked = join(dir, 'fit.bin', 'x.sqlite'); // a path under a file
  const b = cli(small().map((a) => (a === db ? blocked : a)));
  assert.equal(b.status, 2);
  assert.match(b.stderr, /x\.sqlite: .*fit\.bin is a file, not a folder/);
  if (process.getuid?.() !== 0) {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    const r = cli(small().map((a) => (a === db ? join(ro, 'x.sqlite') : a)));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /folder is not writable|cannot create anything in/);
  }
  // Input that fails after the database opened (a missing data file) leaves nothing behind,
  // not even the folder made for it.
  const late = join(dir, 'made', 'late.sqlite');
  const lateRun = cli(small().map((a) => (a === db ? late : a === join(dir, 'fit.bin') ? join(dir, 'missing.bin') : a)));
  assert.equal(lateRun.status, 2);
  assert.match(lateRun.stderr, /missing\.bin/);
  assert.ok(!existsSync(late), 'a database the failed search created is removed');
  assert.ok(!existsSync(join(dir, 'made')), 'and the folder made for it');
  const badPattern = cli(small(['--pattern', '3:4']).map((a) => (a === db ? late : a)));
  assert.equal(badPattern.status, 2);
  assert.match(badPattern.stderr, /--pattern 3:4/);
  const noRun = cli(['search', '--db', join(dir, 'none.sqlite'), '--resume']);
  assert.equal(noRun.status, 2);
  assert.match(noRun.stderr, /no run to resume/);
});

test('a crashed worker and a timed-out task are recorded and the search goes on', async () => {
  await ready;
  // Perplexity tasks: 1 dense warm-up, then candidates; the 4th crashes its worker, the 7th runs (as if) past its limit.
  for (const [fault, status] of [
    ['crash@4', 'crash'],
    ['overtime@7', 'timeout'],
  ] as const) {
    const db = join(dir, `fault-${status}.sqlite`);
    const r = cli(['search', ...base, '--eval-tokens', '1024', '--iterations', '6', '--population', '6', '--baselines', 'none', '--workers', '1', '--db', db, '--json'], { SYMPRUNE_WORKER_FAULT: fault });
    assert.equal(r.status, 0, r.stderr);
    const log = dump(db);
    assertConsistent(log);
    const bad = log.evaluations.filter((e) => e.status !== 'ok' && e.status !== 'reused');
    assert.equal(bad.length, 1, JSON.stringify(bad));
    assert.equal(bad[0]!.status, status);
    assert.equal(bad[0]!.ppl, null);
    const ind = log.individuals.find((i) => i.id === bad[0]!.individual)!;
    assert.equal(ind.fitness, Infinity);
    assert.match(String(ind.invalid), new RegExp(status));
    // Evaluations after the failure succeeded (a replacement worker, or the same one).
    assert.ok(log.evaluations.some((e) => (e.id as number) > (bad[0]!.id as number) && e.status === 'ok'));
  }
});

test('pool: a worker stuck outside onnxruntime is terminated at the hard limit and replaced', async () => {
  const layers = discoverLayers(model);
  const bytes = encodeModel(model);
  const mb = new Uint8Array(new SharedArrayBuffer(bytes.length));
  mb.set(bytes);
  const init: WorkerInit = {
    model: mb,
    tokens: shared(Int32Array.from(structuredTokens(2048, 3))),
    seqlen: 32,
    sparsity: 0.5,
    pattern: { kind: 'unstructured' },
    layers: layers.map((l) => ({ name: l.name, initializer: l.initializer, out: l.out, in: l.in, storedTransposed: l.storedTransposed, weight: shared(readLayerWeight(model, l)), G: null, X: shared(new Float32Array(l.in).fill(1)) })),
    fault: { counter: new Int32Array(new SharedArrayBuffer(4)), at: 2, kind: 'hang' },
  };
  // No time limit except on the task that hangs (it can only end by the hard limit), so nothing here depends on the machine's speed.
  const pool = new EvalPool({ filename: new URL('../src/eval/worker-entry.mjs', import.meta.url), workerData: init, threads: 1, taskTimeoutMs: 0, hardGraceMs: 300 });
  try {
    const tree = parseMetric('mul(W,sqrt(X))');
    const m = await pool.run<{ fingerprint: string }>({ kind: 'mask', tree });
    assert.equal(m.status, 'ok');
    const maskTask = { kind: 'ppl', tree, fingerprint: m.status === 'ok' ? m.value.fingerprint : '', maxTokens: 1024 };
    const first = await pool.run<{ ppl: number }>(maskTask);
    assert.equal(first.status, 'ok');
    const hung = await pool.run(maskTask, undefined, 200);
    assert.equal(hung.status, 'timeout');
    assert.match(hung.status === 'timeout' ? hung.error : '', /worker terminated/);
    const next = await pool.run<{ ppl: number }>(maskTask);
    assert.equal(next.status, 'ok');
    assert.equal(next.status === 'ok' && first.status === 'ok' ? next.value.ppl : 0, first.status === 'ok' ? first.value.ppl : 1);
    assert.equal(pool.replaced, 1);
    // Masks from a tree reading G when the run has no G: an error reply, the worker lives.
    const err = await pool.run({ kind: 'mask', tree: parseMetric('mul(W,G)') });
    assert.equal(err.status, 'error');
  } finally {
    await pool.close();
  }
});
