import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { InputError } from '../src/errors.ts';
import { hasTable, MIGRATIONS, openDatabase, SCHEMA_VERSION, schemaVersion } from '../src/store/schema.ts';
import { configHash, RunStore, stableJson } from '../src/store/store.ts';
import { WorkerLog } from '../src/store/workers.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-store-'));
const info = { config: { population: 10, sparsity: 0.5 }, seed: 1, modelPath: 'm.onnx', modelSha256: 'ab', dataHashes: { search: 'cd' }, versions: { node: process.version } };
const feats = { size: 3, depth: 2, terminals: { W: 2, G: 0, X: 0 }, ops: { mul: 1 } };

function rejects(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof InputError && re.test(e.message) && !e.message.includes('\n'));
}

test('a fresh database gets the schema, WAL and a version row', () => {
  const p = join(dir, 'fresh', 'sub', 'a.sqlite'); // missing folders are created
  const db = openDatabase(p);
  assert.equal(schemaVersion(db), SCHEMA_VERSION);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
  db.close();
  // Reopening migrates nothing and keeps one version row per migration.
  const db2 = openDatabase(p);
  assert.equal(db2.prepare('SELECT COUNT(*) FROM schema_version').pluck().get(), SCHEMA_VERSION);
  db2.close();
});

test('a corrupt file is refused with one line and left byte-identical', () => {
  const p = join(dir, 'corrupt.sqlite');
  const junk = Buffer.from('this is not a database at all, just some text that happens to be long enough'.repeat(20));
  writeFileSync(p, junk);
  rejects(() => openDatabase(p), /corrupt\.sqlite: not a symprune database \(file is not a database\)/);
  rejects(() => openDatabase(p, { readonly: true }), /not a symprune database/);
  assert.deepEqual(readFileSync(p), junk);
  assert.ok(!existsSync(p + '-wal') && !existsSync(p + '-shm'));
});

test('a SQLite header over damaged pages is refused and left unchanged', () => {
  const good = join(dir, 'tobreak.sqlite');
  const db = openDatabase(good);
  RunStore.create(db, info);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const bytes = readFileSync(good);
  // Keep the 100-byte header, scramble the schema page.
  for (let i = 100; i < Math.min(bytes.length, 4096); i++) bytes[i] = (i * 131) & 0xff;
  const p = join(dir, 'damaged.sqlite');
  writeFileSync(p, bytes);
  assert.throws(() => openDatabase(p), (e: unknown) => e instanceof InputError && /damaged\.sqlite: (not a symprune|damaged)/.test(e.message));
  assert.deepEqual(readFileSync(p), bytes);
});

test("another program's SQLite database is refused untouched", () => {
  const p = join(dir, 'other.sqlite');
  const o = new Database(p);
  o.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES (\'x\')');
  o.close();
  const before = readFileSync(p);
  rejects(() => openDatabase(p), /other\.sqlite: not a symprune database \(it holds other tables: customers\)/);
  assert.deepEqual(readFileSync(p), before);
});

test('non-writable paths and missing files are input errors', () => {
  const file = join(dir, 'plain.txt');
  writeFileSync(file, 'x');
  rejects(() => openDatabase(join(file, 'x.sqlite')), /cannot create folder/);
  rejects(() => openDatabase(join(dir, 'nope.sqlite'), { readonly: true }), /nope\.sqlite: no such database/);
  rejects(() => openDatabase(dir), /not a file/);
  if (process.getuid?.() !== 0) {
    const ro = join(dir, 'ro');
    openDatabase(join(ro, 'a.sqlite')).close();
    chmodSync(ro, 0o555);
    rejects(() => openDatabase(join(ro, 'b.sqlite')), /folder is not writable/);
    chmodSync(ro, 0o755);
  }
});

test('a database from a newer symprune is refused', () => {
  const p = join(dir, 'newer.sqlite');
  openDatabase(p).close();
  const raw = new Database(p);
  raw.prepare('INSERT INTO schema_version (version, applied) VALUES (?, ?)').run(SCHEMA_VERSION + 1, 'x');
  raw.close();
  rejects(() => openDatabase(p), /made by a newer symprune/);
});

test('a schema-1 database (before the workers table) is read as it is, and migrated when opened to write', () => {
  const p = join(dir, 'v1.sqlite');
  const raw = new Database(p);
  raw.exec(MIGRATIONS[0]!);
  raw.prepare('INSERT INTO schema_version (version, applied) VALUES (1, ?)').run('2026-01-01T00:00:00.000Z');
  RunStore.create(raw, info);
  raw.close();
  const before = readFileSync(p);
  const ro = openDatabase(p, { readonly: true });
  assert.equal(schemaVersion(ro), 1);
  assert.equal(hasTable(ro, 'workers'), false);
  assert.equal(ro.prepare('SELECT COUNT(*) FROM runs').pluck().get(), 1);
  ro.close();
  assert.deepEqual(readFileSync(p), before, 'reading changed nothing');
  const rw = openDatabase(p);
  assert.equal(schemaVersion(rw), SCHEMA_VERSION);
  assert.ok(hasTable(rw, 'workers'));
  assert.equal(rw.prepare('SELECT COUNT(*) FROM runs').pluck().get(), 1, 'the run survived the migration');
  rw.close();
});

test('the workers log: states from the queue\'s list, counts from job results, kept across sessions', () => {
  const db = openDatabase(join(dir, 'workers.sqlite'));
  const run = RunStore.create(db, info).runId;
  const a = { name: 'gpu1:11', host: 'gpu1', pid: 11 };
  const b = { name: 'gpu2:22', host: 'gpu2', pid: 22 };
  const rows = () => db.prepare('SELECT worker, host, pid, threads, device, jobs_done, jobs_failed, evaluations, seconds, state, first_seen, last_seen FROM workers WHERE run = ? ORDER BY worker').all(run) as Record<string, any>[];
  const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
  const log = new WorkerLog(db, run);
  log.seen([a, b], ['gpu1:11'], t(0));
  assert.deepEqual(rows().map((r) => [r.worker, r.host, r.pid, r.state, r.jobs_done]), [['gpu1:11', 'gpu1', 11, 'busy', 0], ['gpu2:22', 'gpu2', 22, 'idle', 0]]);
  log.jobDone({ ...a, threads: 4, device: 'cuda' }, { ok: true, perplexity: true, seconds: 1.5 }, t(3));
  log.jobDone(a, { ok: true, perplexity: false, seconds: 0.5 }, t(4));
  log.jobDone(b, { ok: false, perplexity: true, seconds: 2 }, t(5));
  log.seen([a], [], t(6)); // b disconnected
  const [ra, rb] = rows();
  assert.deepEqual([ra!.jobs_done, ra!.jobs_failed, ra!.evaluations, ra!.seconds, ra!.threads, ra!.device, ra!.state], [2, 0, 1, 2, 4, 'cuda', 'idle']);
  assert.deepEqual([rb!.jobs_done, rb!.jobs_failed, rb!.evaluations, rb!.state, rb!.last_seen], [0, 1, 0, 'gone', t(5).toISOString()]);
  assert.equal(ra!.first_seen, t(0).toISOString());
  assert.equal(ra!.last_seen, t(6).toISOString());
  // An idle worker's last_seen is not rewritten on every look (each write wakes the dashboards)...
  log.seen([a], [], t(10));
  assert.equal(rows()[0]!.last_seen, t(6).toISOString());
  // ...but after half a minute it is.
  log.seen([a], [], t(40));
  assert.equal(rows()[0]!.last_seen, t(40).toISOString());
  // A resumed run's log goes on counting; a worker back under its old name is seen again.
  const again = new WorkerLog(db, run);
  again.jobDone(a, { ok: true, perplexity: true, seconds: 1 }, t(50));
  again.seen([a, b], ['gpu2:22'], t(51));
  assert.deepEqual(rows().map((r) => [r.jobs_done, r.state]), [[3, 'idle'], [0, 'busy']]);
  again.seen([], [], t(52)); // the run stops listening
  assert.deepEqual(rows().map((r) => r.state), ['gone', 'gone']);
  db.close();
});

test('run writer: individuals, evaluations, checkpoints, replay checks', () => {
  const db = openDatabase(join(dir, 'w.sqlite'));
  const s = RunStore.create(db, info);
  assert.equal(s.run.status, 'running');
  assert.equal(s.run.configHash, configHash({ sparsity: 0.5, population: 10 }));
  const ind = { id: 0, infix: 'mul(W,W)', tree: { data: 'mul' }, hash: 'h0', features: feats, parents: [], origin: 'init', step: 0 };
  s.addIndividual(ind);
  s.addIndividual(ind); // a replay of the same individual is a no-op
  assert.throws(() => s.addIndividual({ ...ind, hash: 'other' }), /diverged/);
  assert.throws(() => s.addIndividual({ ...ind, id: 1, features: { ...feats, ops: { foo: 1 } as never } }), /unknown operator/);
  const e = s.addEvaluation({ individual: 0, fidelity: 'short', tokens: 100, ppl: 12.5, seconds: 0.1, worker: 1, status: 'ok' });
  assert.throws(() => s.addEvaluation({ individual: 0, fidelity: 'short', tokens: 100, ppl: 13, seconds: 0.1, worker: 1, status: 'ok' }), /UNIQUE/);
  assert.throws(() => s.addEvaluation({ individual: 7, fidelity: 'short', tokens: 100, ppl: 13, seconds: 0.1, worker: 1, status: 'ok' }), /FOREIGN KEY/);
  assert.equal(s.evaluation(0, 'short')!.id, e);
  assert.equal(s.evaluation(0, 'full'), undefined);
  s.setFingerprint(0, 'fp');
  s.setFitness(0, 12.5, 'short');
  assert.deepEqual(s.sameMask('fp'), { id: 0, fitness: 12.5, fidelity: 'short' });
  assert.equal(s.sameMask('fp', 0), undefined);
  s.addIndividual({ ...ind, id: 1, hash: 'h1', invalid: 'constant tree' });
  assert.equal(db.prepare('SELECT fitness FROM individuals WHERE id = 1').pluck().get(), Infinity);
  s.saveCheckpoint(1, { a: 1 });
  s.saveCheckpoint(2, { a: 2 });
  assert.deepEqual(s.latestCheckpoint(), { step: 2, state: { a: 2 } });
  assert.equal(db.prepare('SELECT COUNT(*) FROM checkpoints').pluck().get(), 1);
  s.setStatus('finished');
  assert.equal(RunStore.open(db, s.runId).run.status, 'finished');
  assert.equal(stableJson({ b: 1, a: [1, { d: 2, c: 3 }] }), '{"a":[1,{"c":3,"d":2}],"b":1}');
  db.close();
  assert.ok(readdirSync(dir).includes('w.sqlite'));
});
