/**
 * One writer per search database, and a run never mixes two models or data sets: real
 * `symprune search` processes racing for one database, a resume while the writer lives,
 * a writer killed with -9, and resumes after the model, the fitness data or the statistics
 * file changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { discoverLayers } from '../src/prune/discover.ts';
import { writeStatsFile } from '../src/prune/stats-file.ts';
import { structuredTokens } from './support/token-stream.ts';

const BIN = join(import.meta.dirname, '..', 'bin', 'symprune.mjs');
const dir = mkdtempSync(join(tmpdir(), 'symprune-guard-'));
const cfg = { vocabSize: 64, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };
const model = buildLlama(cfg, initLlamaWeights(cfg, 1, 0.2));

const ready = (async () => {
  await saveModel(model, join(dir, 'model.onnx'));
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 2, 0.2)), join(dir, 'other.onnx'));
  writeFileSync(join(dir, 'fit.bin'), structuredTokens(4096, 1));
  writeFileSync(join(dir, 'calib.bin'), structuredTokens(2048, 2));
  const layers = discoverLayers(model);
  const fill = (n: number, v: number): Float32Array => Float32Array.from({ length: n }, (_, i) => v + (i % 7) / 7);
  writeStatsFile(join(dir, 'stats.safetensors'), layers, (l) => ({ G: fill(l.out * l.in, 1), X: fill(l.in, 2) }));
})();

const args = (db: string, extra: string[] = []): string[] => [
  'search', '--model', join(dir, 'model.onnx'), '--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'), '--nsamples', '4', '--seqlen', '32',
  '--population', '4', '--iterations', '4', '--eval-tokens', '256', '--baselines', 'none', '--workers', '1', '--batch', '2', '--db', db, '--json', ...extra,
];

/** A search whose first perplexity task hangs (until killed): a writer that stays alive. */
function stuckSearch(db: string, extra: string[] = []): { child: ChildProcess; done: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, [BIN, ...args(db, ['--task-timeout', '3600', ...extra])], { env: { ...process.env, SYMPRUNE_WORKER_FAULT: 'hang@1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.resume();
  const done = new Promise<{ code: number | null; stderr: string }>((res) => child.on('exit', (code) => res({ code, stderr })));
  return { child, done };
}

function cli(a: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [BIN, ...a], { encoding: 'utf8' });
}

function runs(db: string): Array<{ id: number; status: string }> {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare('SELECT id, status FROM runs').all() as Array<{ id: number; status: string }>;
  } finally {
    d.close();
  }
}

/** Wait (by polling the database, as a reader would) until a run row exists. */
async function runCreated(db: string): Promise<void> {
  for (;;) {
    if (existsSync(db) && existsSync(`${db}.lock`)) {
      try {
        if (runs(db).length > 0) return;
      } catch {
        // the writer is still creating the schema
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const killed = (c: ChildProcess): Promise<unknown> => new Promise((res) => (c.on('exit', res), c.kill('SIGKILL')));

test('two searches started at once on one database: one clear refusal naming the holder; resume refused while it lives; after kill -9 the run resumes intact', { timeout: 300_000 }, async () => {
  await ready;
  const db = join(dir, 'race.sqlite');
  const a = stuckSearch(db);
  const b = stuckSearch(db);
  // One of them wins the lock and hangs in its first task; the other is refused at once.
  const loser = await Promise.race([a.done.then((r) => ({ r, winner: b })), b.done.then((r) => ({ r, winner: a }))]);
  assert.equal(loser.r.code, 2, loser.r.stderr);
  const lines = loser.r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, loser.r.stderr);
  assert.match(lines[0]!, new RegExp(`^symprune: .*race\\.sqlite is being written by search \\(pid ${loser.winner.child.pid} on host [^,]+, since [^)]+\\); one writer per database`));

  await runCreated(db);
  const resumeLive = cli(['search', '--db', db, '--resume', '--json']);
  assert.equal(resumeLive.status, 2, resumeLive.stderr);
  assert.match(resumeLive.stderr.trim(), new RegExp(`^symprune: .*being written by search \\(pid ${loser.winner.child.pid} on host`));

  await killed(loser.winner.child);
  assert.ok(existsSync(`${db}.lock`), 'kill -9 leaves the lock file, which the next writer takes over');
  assert.deepEqual(runs(db).map((r) => r.status), ['running']);

  // The model file changed under the run: refused whatever flags are given (here none).
  const modelFile = join(dir, 'model.onnx');
  const original = readFileSync(modelFile);
  copyFileSync(join(dir, 'other.onnx'), modelFile);
  const changedModel = cli(['search', '--db', db, '--resume', '--json']);
  writeFileSync(modelFile, original);
  assert.equal(changedModel.status, 2, changedModel.stderr);
  assert.match(changedModel.stderr.trim(), /^symprune: --resume: .*model\.onnx is not the model run 1 was started with \(sha256 [0-9a-f]+… now, [0-9a-f]+… then\)/);
  // The same model at another path is the same model.
  const sameBytes = join(dir, 'copy.onnx');
  copyFileSync(modelFile, sameBytes);

  // The fitness data changed: refused before any statistics are computed.
  const fit = join(dir, 'fit.bin');
  const fitBytes = readFileSync(fit);
  writeFileSync(fit, structuredTokens(4096, 9));
  const changedData = cli(['search', '--db', db, '--resume', '--json']);
  writeFileSync(fit, fitBytes);
  assert.equal(changedData.status, 2, changedData.stderr);
  assert.match(changedData.stderr.trim(), /^symprune: --resume: the fitness data .*fit\.bin changed since run 1 started/);

  const resumed = cli(['search', '--db', db, '--resume', '--model', sameBytes, '--json']);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.equal(JSON.parse(resumed.stdout).status, 'finished');
  assert.deepEqual(runs(db).map((r) => r.status), ['finished'], 'one run, finished: nothing from the refused writers');
  assert.ok(!existsSync(`${db}.lock`), 'the lock is gone after a clean exit');
});

test('--resume refuses a statistics file that changed since the run started', { timeout: 300_000 }, async () => {
  await ready;
  const db = join(dir, 'stats.sqlite');
  const stats = join(dir, 'stats.safetensors');
  const s = stuckSearch(db, ['--stats', stats]);
  await runCreated(db);
  await killed(s.child);
  const bytes = readFileSync(stats);
  const edited = Buffer.from(bytes);
  edited[edited.length - 1] ^= 0x40; // one value of the last tensor changed
  writeFileSync(stats, edited);
  const r = cli(['search', '--db', db, '--resume', '--json']);
  writeFileSync(stats, bytes);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr.trim(), /^symprune: --resume: the statistics file .*stats\.safetensors changed since run 1 started/);
  const ok = cli(['search', '--db', db, '--resume', '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(runs(db).map((x) => x.status), ['finished']);
});
