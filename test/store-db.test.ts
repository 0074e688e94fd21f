import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { InputError } from '../src/errors.ts';
import { openDatabase, SCHEMA_VERSION, schemaVersion } from '../src/store/schema.ts';
import { configHash, RunStore, stableJson } from '../src/store/store.ts';

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
