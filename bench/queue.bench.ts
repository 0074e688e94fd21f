/**
 * Candidate evaluation through the job queue against the local pool, on the bundled model:
 *  1. candidate evaluations per minute (masks + perplexity at the short budget, the same 12
 *     metrics each time) with the local pool of 2 threads, and through the queue (BullMQ on a
 *     redis-server started here) with 1 and 2 `symprune worker` processes;
 *  2. the queue's overhead per task: the coordinator's round trip minus the worker's own time,
 *     one task at a time, next to the local pool's and to one evaluation's time.
 * This machine has 2 cores: 2 queue workers compete with each other and with the coordinator.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUNDLED_MODEL_DIR, resolveModel } from '../src/model/load.ts';
import { EvalPool, WORKER_FILE } from '../src/eval/pool.ts';
import { QueueRunner, redisConnection } from '../src/eval/queue.ts';
import type { TaskRunner } from '../src/eval/task-runner.ts';
import type { MaskReply, PplReply } from '../src/eval/worker.ts';
import { modelSha256 } from '../src/model/load.ts';
import { prepareData } from '../src/search/setup.ts';
import { jobSpec } from '../src/search/runners.ts';
import { SEARCH_DEFAULTS, shortTokens, type SearchSettings } from '../src/search/settings.ts';
import { tokensSha256 } from '../src/eval/job.ts';
import { parseMetric } from '../src/search-space/index.ts';
import { freePort } from '../test/support/free-port.ts';

const METRICS = [
  'W', 'mul(W,sqrt(X))', 'mul(abs(mul(W,W)),mms(G))', 'add(mul(W,sqrt(X)),mul(W,G))', 'mul(W,G)', 'add(W,G)',
  'mul(sqrt(W),X)', 'add(mul(W,X),G)', 'mul(W,exp(G))', 'mul(sqr(W),X)', 'add(W,mms(G))', 'mul(W,add(X,G))',
];
const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

function waitLine(child: ChildProcess, re: RegExp): Promise<void> {
  return new Promise((res, rej) => {
    let buf = '';
    const on = (d: Buffer) => {
      buf += d;
      if (re.test(buf)) res();
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.on('exit', (c) => rej(new Error(`exited (${c}) before ${re}: ${buf}`)));
  });
}

/** Every metric masked then evaluated at the short budget, all in flight at once; candidates per minute. */
async function throughput(runner: TaskRunner, maxTokens: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    METRICS.map(async (m, i) => {
      const tree = parseMetric(m);
      const mk = await runner.run<MaskReply>({ kind: 'mask', tree, key: `bench/${Date.now()}/${i}/mask` });
      if (mk.status !== 'ok') throw new Error(`${m}: ${mk.status === 'error' ? mk.error : mk.status}`);
      const p = await runner.run<PplReply>({ kind: 'ppl', tree, fingerprint: mk.value.fingerprint, maxTokens, key: `bench/${Date.now()}/${i}/ppl` });
      if (p.status !== 'ok') throw new Error(`${m}: ${p.error}`);
    }),
  );
  return METRICS.length / ((performance.now() - t0) / 60000);
}

/** One perplexity task at a time: round trip and the worker's own time (s). */
async function roundTrips(runner: TaskRunner, maxTokens: number, n = 8): Promise<{ wall: number; work: number }> {
  const tree = parseMetric('mul(W,sqrt(X))');
  const mk = await runner.run<MaskReply>({ kind: 'mask', tree, key: `rt/${Date.now()}/mask` });
  if (mk.status !== 'ok') throw new Error('mask failed');
  const wall: number[] = [];
  const work: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const p = await runner.run<PplReply>({ kind: 'ppl', tree, fingerprint: mk.value.fingerprint, maxTokens, key: `rt/${Date.now()}/${i}` });
    if (p.status !== 'ok') throw new Error(p.error);
    wall.push((performance.now() - t0) / 1000);
    work.push(p.seconds);
  }
  return { wall: median(wall), work: median(work) };
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'symprune-queue-bench-'));
  const desc = resolveModel(BUNDLED_MODEL_DIR);
  const settings: SearchSettings = { ...SEARCH_DEFAULTS, modelSha256: await modelSha256(desc), batch: 4, iterations: 0, generations: null, nsamples: 16, baselines: [] };
  const data = await prepareData(settings, { modelPath: desc.modelPath, tokenizerPath: desc.tokenizerPath, dbPath: join(dir, 'bench.sqlite') }, {});
  const maxTokens = shortTokens(settings);
  console.log(`bundled model, ${data.layers.length} prunable layers; a candidate = masks + perplexity on ${maxTokens} tokens (the short budget); ${METRICS.length} candidates per measure`);

  // Local pool, 2 threads: the baseline.
  const pool = new EvalPool({ filename: WORKER_FILE, workerData: data.workerInit, threads: 2, taskTimeoutMs: 0 });
  await throughput(pool, maxTokens); // warm-up
  const local = await throughput(pool, maxTokens);
  await pool.close();
  const pool1 = new EvalPool({ filename: WORKER_FILE, workerData: data.workerInit, threads: 1, taskTimeoutMs: 0 });
  const localRt = await roundTrips(pool1, maxTokens);
  await pool1.close();
  console.log(`local pool, 2 threads: ${local.toFixed(1)} candidates/min (1.00x)`);

  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const workers: ChildProcess[] = [];
  try {
    await waitLine(redis, /Ready to accept connections/);
    const url = `redis://127.0.0.1:${port}`;
    const spec = await jobSpec({ data, settings, modelSha256: settings.modelSha256, tokensSha256: tokensSha256(data.tokens), modelPath: desc.modelPath, runKey: 'bench' });
    const runner = await QueueRunner.open({ connection: redisConnection(url), spec, runKey: `bench${Date.now()}`, parallelism: 2, sweepMs: 500 });
    let rt: { wall: number; work: number } | null = null;
    for (const n of [1, 2]) {
      while (workers.length < n) {
        const w = spawn(process.execPath, ['bin/symprune.mjs', 'worker', '--queue', url], { stdio: ['ignore', 'pipe', 'pipe'] });
        workers.push(w);
        await waitLine(w, /waiting for jobs/);
        const loaded = waitLine(w, /loaded spec/);
        // Dense tasks until this worker has loaded the job (the others may take some).
        while (!(await Promise.race([loaded.then(() => true), runner.run({ kind: 'dense', maxTokens: 256 }).then(() => false)]))) {
          /* keep sending */
        }
      }
      await throughput(runner, maxTokens); // warm-up
      const q = await throughput(runner, maxTokens);
      console.log(`queue, ${n} worker process${n > 1 ? 'es' : ''}: ${q.toFixed(1)} candidates/min (${(q / local).toFixed(2)}x the local pool)`);
      if (n === 1) rt = await roundTrips(runner, maxTokens);
    }
    await runner.close();
    const over = (x: { wall: number; work: number }) => (1000 * (x.wall - x.work)).toFixed(1);
    console.log(`one perplexity evaluation (short budget, worker's time): ${(1000 * rt!.work).toFixed(0)} ms; overhead per task: queue ${over(rt!)} ms, local pool ${over(localRt)} ms`);
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null ? r(null) : w.on('exit', r)))));
    redis.kill('SIGTERM');
  }
}
