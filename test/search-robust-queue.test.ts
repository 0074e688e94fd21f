/**
 * A search over two settings through the job queue (a real redis-server on a free loopback
 * port, a real `symprune worker` process): the workers mask and measure each setting the job
 * names, and the log equals the same seeded search on the local pool, setting by setting.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { structuredTokens } from './support/token-stream.ts';
import { freePort } from './support/free-port.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-robust-queue-'));
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A child process; `waitFor` resolves once a matching line was printed, rejects if it exits first. */
function start(cmd: string, args: string[]) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let text = '';
  let stdout = '';
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const waiters: { re: RegExp; res: () => void }[] = [];
  const onData = (d: Buffer, out: boolean): void => {
    text += d;
    if (out) stdout += d;
    for (const w of [...waiters]) if (w.re.test(text)) (waiters.splice(waiters.indexOf(w), 1), w.res());
  };
  child.stdout!.on('data', (d: Buffer) => onData(d, true));
  child.stderr!.on('data', (d: Buffer) => onData(d, false));
  return {
    child,
    exited,
    output: () => text,
    stdout: () => stdout,
    waitFor: (re: RegExp): Promise<void> =>
      re.test(text) ? Promise.resolve() : Promise.race([new Promise<void>((res) => waiters.push({ re, res })), exited.then((c) => Promise.reject(new Error(`exited (${c}) before ${re}: ${text}`)))]),
  };
}

function log(db: string) {
  const d = new Database(db, { readonly: true });
  try {
    return {
      individuals: d.prepare('SELECT id, hash, fingerprint, fitness, fidelity, invalid FROM individuals ORDER BY id').all(),
      evaluations: d.prepare('SELECT individual, setting, fidelity, tokens, ppl, status, fingerprint FROM evaluations ORDER BY individual, setting, fidelity').all(),
      baselines: d.prepare('SELECT method, pattern, sparsity, ppl FROM baselines ORDER BY method, pattern, sparsity').all(),
    };
  } finally {
    d.close();
  }
}

test('two settings through the queue: the same log as the local pool', async () => {
  const modelDir = join(dir, 'model');
  mkdirSync(modelDir);
  const cfg = { vocabSize: 64, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 1, 0.2)), join(modelDir, 'model.onnx'));
  writeFileSync(join(dir, 'fit.bin'), structuredTokens(4096, 1));
  writeFileSync(join(dir, 'calib.bin'), structuredTokens(2048, 2));
  const args = (db: string, extra: string[]) => [
    'bin/symprune.mjs', 'search', '--model', modelDir, '--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'), '--nsamples', '4', '--seqlen', '32', '--seed', '4',
    '--population', '4', '--iterations', '4', '--batch', '2', '--eval-tokens', '1024', '--settings', '0.6,2:4', '--baselines', 'wanda,sparsegpt', '--db', db, '--json', ...extra,
  ];
  const local = start(process.execPath, args(join(dir, 'local.sqlite'), ['--workers', '1']));
  assert.equal(await local.exited, 0, local.output());

  const port = await freePort();
  const redis = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no']);
  await redis.waitFor(/Ready to accept connections/);
  const url = `redis://127.0.0.1:${port}`;
  const worker = start(process.execPath, ['bin/symprune.mjs', 'worker', '--queue', url]);
  await worker.waitFor(/waiting for jobs/);
  const queued = start(process.execPath, args(join(dir, 'queue.sqlite'), ['--queue', url]));
  assert.equal(await queued.exited, 0, queued.output());
  assert.match(worker.output(), /loaded spec/);
  worker.child.kill('SIGTERM');
  redis.child.kill('SIGTERM');
  await Promise.all([worker.exited, redis.exited]);

  const a = log(join(dir, 'local.sqlite'));
  const b = log(join(dir, 'queue.sqlite'));
  assert.deepEqual(b.individuals, a.individuals);
  assert.deepEqual(b.evaluations, a.evaluations);
  assert.deepEqual(b.baselines, a.baselines);
  assert.deepEqual([...new Set((a.evaluations as { setting: string }[]).map((e) => e.setting))], ['0.6:unstructured', '2:4']);
  assert.deepEqual(JSON.parse(queued.stdout()).settings, ['0.6:unstructured', '2:4']);
});
