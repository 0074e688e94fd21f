/**
 * Candidate evaluation through the job queue, against a real redis-server started here on a
 * free loopback port, real `symprune worker` processes and a real `symprune search`
 * coordinator: the same seeded search gives the same log whatever evaluates it, and the
 * faults a team sharing machines meets are survived (a worker killed mid-evaluation, the
 * coordinator killed and resumed, Redis restarted, a worker holding the wrong model).
 * Nothing here waits a fixed time: every wait is for a state (a line, a row, an exit).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Queue } from 'bullmq';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { QUEUE_NAME, type QueueJobData, type QueueJobResult } from '../src/eval/queue.ts';
import { structuredTokens } from './support/token-stream.ts';
import { assertConsistent, dump, sameSearch } from './support/search-log.ts';
import { freePort } from './support/free-port.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-queue-'));
const cfg = { vocabSize: 64, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };
const modelDir = join(dir, 'model');
const otherDir = join(dir, 'other');
const ready = (async () => {
  mkdirSync(modelDir);
  mkdirSync(otherDir);
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 1, 0.2)), join(modelDir, 'model.onnx'));
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 2, 0.2)), join(otherDir, 'model.onnx'));
  writeFileSync(join(dir, 'fit.bin'), structuredTokens(8192, 1));
  writeFileSync(join(dir, 'calib.bin'), structuredTokens(4096, 2));
})();

const searchArgs = (db: string, extra: string[] = []) => [
  'search', '--model', modelDir, '--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'), '--nsamples', '8', '--seqlen', '32', '--seed', '3',
  '--population', '8', '--iterations', '16', '--batch', '2', '--eval-tokens', '2048', '--baselines', 'wanda,sparsegpt', '--db', db, '--json', ...extra,
];

const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** A child process whose output lines can be waited for. */
function start(cmd: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  const waiters: { re: RegExp; res: () => void }[] = [];
  const onData = () => {
    for (const w of [...waiters]) if (w.re.test(err) || w.re.test(out)) (waiters.splice(waiters.indexOf(w), 1), w.res());
  };
  child.stdout!.on('data', (d) => ((out += d), onData()));
  child.stderr!.on('data', (d) => ((err += d), onData()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return {
    child,
    exited,
    get stdout() {
      return out;
    },
    get stderr() {
      return err;
    },
    /** Resolves once a line matching re has been printed; rejects if the process exits first. */
    waitFor(re: RegExp): Promise<void> {
      if (re.test(err) || re.test(out)) return Promise.resolve();
      return Promise.race([
        new Promise<void>((res) => waiters.push({ re, res })),
        exited.then((c) => Promise.reject(new Error(`exited (${c}) before printing ${re}:\n${err}`))),
      ]);
    },
  };
}

const cli = (args: string[], env: Record<string, string> = {}) => start(process.execPath, ['bin/symprune.mjs', ...args], env);

/** redis-server on a loopback port, its data (append-only file) in its own folder so a restart keeps the queue. */
async function redis(port?: number, data = mkdtempSync(join(dir, 'redis-'))) {
  const p = port ?? (await freePort());
  const server = start('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--dir', data, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '']);
  await server.waitFor(/Ready to accept connections/);
  return {
    url: `redis://127.0.0.1:${p}`,
    port: p,
    data,
    async stop() {
      server.child.kill('SIGTERM');
      await server.exited;
    },
    /** The completed jobs: attempt counts, the worker that answered (as its result names it), the task's kind. */
    async completedJobs(): Promise<{ id: string; attemptsStarted: number; worker: string; kind: string; ok: boolean }[]> {
      const q = new Queue<QueueJobData, QueueJobResult>(QUEUE_NAME, { connection: { host: '127.0.0.1', port: p, maxRetriesPerRequest: null } });
      try {
        return (await q.getJobs(['completed'])).map((j) => ({ id: j.id!, attemptsStarted: j.attemptsStarted, worker: j.returnvalue.name!, kind: j.data.task.kind, ok: j.returnvalue.reply.ok }));
      } finally {
        await q.close();
      }
    },
  };
}

/** A worker; `lock` is how long its job survives it silent (short only where a worker is killed, so a slow machine's late lock renewals do not re-queue jobs elsewhere). */
async function worker(url: string, extra: string[] = [], env: Record<string, string> = {}, lock = 30) {
  const w = cli(['worker', '--queue', url, '--lock-seconds', String(lock), ...extra], env);
  await w.waitFor(/waiting for jobs/);
  return w;
}

/** Evaluations committed so far (0 before the schema exists). */
function evaluationsIn(db: string): number {
  if (!existsSync(db)) return 0;
  try {
    const d = new Database(db, { readonly: true });
    try {
      return d.prepare('SELECT COUNT(*) FROM evaluations').pluck().get() as number;
    } finally {
      d.close();
    }
  } catch {
    return 0;
  }
}

/** Wait until the database holds n evaluations (polling its state), or the process ends first (an error). */
function untilEvaluations(db: string, n: number, proc: { exited: Promise<number | null> }): Promise<void> {
  return until(() => evaluationsIn(db) >= n, `${n} evaluations were committed`, proc);
}

/** Wait until cond holds (polling), or the process ends first (an error). */
async function until(cond: () => boolean, what: string, proc: { exited: Promise<number | null> }): Promise<void> {
  let done = false;
  void proc.exited.then(() => (done = true));
  while (!cond()) {
    if (done) throw new Error(`the search ended before ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface WorkerRow {
  worker: string;
  host: string;
  pid: number;
  threads: number | null;
  device: string | null;
  first_seen: string;
  last_seen: string;
  jobs_done: number;
  jobs_failed: number;
  evaluations: number;
  seconds: number;
  state: string;
}

/** The run's workers table (empty before it exists). */
function workersIn(db: string): WorkerRow[] {
  if (!existsSync(db)) return [];
  try {
    const d = new Database(db, { readonly: true });
    try {
      return d.prepare('SELECT * FROM workers WHERE run = 1 ORDER BY worker').all() as WorkerRow[];
    } finally {
      d.close();
    }
  } catch {
    return [];
  }
}

const nameOf = (w: { child: ChildProcess }) => `${hostname()}:${w.child.pid}`;

/**
 * The workers table against Redis's own record of the run's completed jobs (`jobs`): one row per
 * worker, each with exactly the jobs its results name, its perplexity evaluations equal to the
 * run log's evaluations by its process id, and every worker gone once the search has stopped.
 */
function assertWorkers(db: string, jobs: { worker: string; kind: string; ok: boolean }[], workers: { child: ChildProcess }[]): void {
  const rows = workersIn(db);
  assert.deepEqual(rows.map((r) => r.worker), workers.map(nameOf).sort(), 'one row per worker that was connected');
  const d = new Database(db, { readonly: true });
  try {
    for (const r of rows) {
      const mine = jobs.filter((j) => j.worker === r.worker);
      assert.equal(r.host, hostname());
      assert.equal(r.worker, `${r.host}:${r.pid}`);
      assert.equal(r.jobs_done, mine.filter((j) => j.ok).length, `${r.worker}: jobs done`);
      assert.equal(r.jobs_failed, mine.filter((j) => !j.ok).length, `${r.worker}: jobs failed`);
      assert.equal(r.evaluations, mine.filter((j) => j.ok && j.kind !== 'mask').length, `${r.worker}: perplexity evaluations`);
      const logged = d.prepare(`SELECT COUNT(*) FROM evaluations WHERE run = 1 AND status = 'ok' AND worker = ?`).pluck().get(r.pid);
      assert.equal(logged, mine.filter((j) => j.kind === 'ppl').length, `${r.worker}: the candidates' evaluations it made`);
      assert.equal(r.state, 'gone', 'the stopped search no longer counts on it');
      assert.ok(r.first_seen <= r.last_seen);
      if (r.jobs_done) assert.ok(r.seconds > 0 && r.threads === 1 && r.device === 'cpu', JSON.stringify(r));
    }
  } finally {
    d.close();
  }
  assert.equal(rows.reduce((a, r) => a + r.jobs_done + r.jobs_failed, 0), jobs.length, 'every job of the run is counted once');
}

async function finished(p: ReturnType<typeof cli>) {
  const code = await p.exited;
  assert.equal(code, 0, p.stderr);
  return JSON.parse(p.stdout.trim().split('\n').pop()!);
}

let reference: ReturnType<typeof dump>;

test('the same seeded search gives the same log with the local pool, one queue worker and three', async () => {
  await ready;
  const local = cli(searchArgs(join(dir, 'local.sqlite'), ['--workers', '1']));
  assert.equal((await finished(local)).status, 'finished');
  reference = dump(join(dir, 'local.sqlite'));
  assertConsistent(reference);
  assert.ok(reference.baselines.length === 3 && reference.baselines.every((b) => b.ppl !== null), JSON.stringify(reference.baselines));

  const r = await redis();
  try {
    for (const n of [1, 3]) {
      const ws = await Promise.all(Array.from({ length: n }, () => worker(r.url)));
      const db = join(dir, `queue-${n}.sqlite`);
      const earlier = new Set((await r.completedJobs()).map((j) => j.id));
      const s = cli(searchArgs(db, ['--queue', r.url]));
      await finished(s);
      const log = dump(db);
      assertConsistent(log);
      sameSearch(log, reference);
      assertWorkers(db, (await r.completedJobs()).filter((j) => !earlier.has(j.id)), ws);
      for (const w of ws) w.child.kill('SIGTERM');
      const codes = await Promise.all(ws.map((w) => w.exited));
      assert.deepEqual(codes, ws.map(() => 0), 'workers stop cleanly on SIGTERM');
      if (n === 3) assert.ok(ws.filter((w) => /loaded spec/.test(w.stderr)).length >= 2, 'the evaluations were spread over the workers');
    }
  } finally {
    await r.stop();
  }
});

test('a worker killed mid-evaluation: another worker finishes its job, and the log holds one evaluation for it', async () => {
  await ready;
  const r = await redis();
  try {
    // Worker A hangs inside its 4th perplexity task and is killed there; only then does B start.
    const a = await worker(r.url, [], { SYMPRUNE_WORKER_FAULT: 'hang@4' }, 2);
    const db = join(dir, 'worker-killed.sqlite');
    const s = cli(searchArgs(db, ['--queue', r.url]));
    await a.waitFor(/fault hang at perplexity task 4/);
    // A holds its job until killed; once killed, the search has no worker and waits: both
    // states last until the test moves on, so the coordinator's view of them is awaited.
    const stateOfA = () => workersIn(db).find((w) => w.worker === nameOf(a))?.state;
    await until(() => stateOfA() === 'busy', 'worker A was seen busy', s);
    a.child.kill('SIGKILL');
    await a.exited;
    await until(() => stateOfA() === 'gone', 'worker A was seen gone', s);
    const b = await worker(r.url, [], {}, 2);
    await finished(s);
    const log = dump(db);
    assertConsistent(log);
    sameSearch(log, reference);
    assert.ok(log.evaluations.every((e) => e.status === 'ok' || e.status === 'reused'), 'no evaluation failed');
    const jobs = await r.completedJobs();
    assert.ok(jobs.some((j) => j.attemptsStarted > 1), 'the job A held was started again');
    assertWorkers(db, jobs, [a, b]);
    b.child.kill('SIGTERM');
    await b.exited;
  } finally {
    await r.stop();
  }
});

test('the coordinator killed with SIGKILL and resumed: nothing paid twice, the log equals an uninterrupted run', async () => {
  await ready;
  const r = await redis();
  try {
    const w = await worker(r.url);
    const db = join(dir, 'coordinator-killed.sqlite');
    const s = cli(searchArgs(db, ['--queue', r.url]));
    await untilEvaluations(db, 10, s);
    s.child.kill('SIGKILL');
    await s.exited;
    const resumed = cli(['search', '--db', db, '--resume', '--queue', r.url, '--json']);
    await finished(resumed);
    const log = dump(db);
    assertConsistent(log);
    sameSearch(log, reference);
    w.child.kill('SIGTERM');
    await w.exited;
    const done = Number(/(\d+) jobs done/.exec(w.stderr)?.[1]);
    const jobs = await r.completedJobs();
    assert.ok(jobs.every((j) => j.attemptsStarted === 1), 'no job ran twice');
    assert.equal(done, jobs.length, 'every job the worker ran is a distinct completed job (a resumed task found its result)');
  } finally {
    await r.stop();
  }
});

test('Redis restarted mid-run: the search waits for it and goes on to the same log', async () => {
  await ready;
  const r = await redis();
  let again: Awaited<ReturnType<typeof redis>> | null = null;
  try {
    const w = await worker(r.url);
    const db = join(dir, 'redis-restarted.sqlite');
    const s = cli(searchArgs(db, ['--queue', r.url]));
    await untilEvaluations(db, 8, s);
    await r.stop();
    again = await redis(r.port, r.data);
    await finished(s);
    const log = dump(db);
    assertConsistent(log);
    sameSearch(log, reference);
    w.child.kill('SIGTERM');
    await w.exited;
  } finally {
    await (again ?? r).stop();
  }
});

test('a worker with the wrong model: the search stops with the reason and resumes once a right worker serves it', async () => {
  await ready;
  const r = await redis();
  try {
    const wrong = await worker(r.url, ['--model-root', otherDir]);
    const db = join(dir, 'wrong-model.sqlite');
    const s = cli(searchArgs(db, ['--queue', r.url]));
    assert.equal(await s.exited, 2, s.stderr);
    const line = s.stderr.trim().split('\n').pop()!;
    assert.match(line, /^symprune: worker .*: model with sha256 [0-9a-f]{12}… not found: no model\.onnx with that hash under .*other; .*other\/model\.onnx hashes differently; the search stopped/);
    assert.equal(dump(db).runs[0]!.status, 'interrupted');
    const [w1] = workersIn(db);
    assert.deepEqual([w1!.worker, w1!.jobs_done, w1!.state], [nameOf(wrong), 0, 'gone']);
    assert.ok(w1!.jobs_failed >= 1, 'the job it could not take counts against it');
    wrong.child.kill('SIGTERM');
    await wrong.exited;

    const right = await worker(r.url, ['--model-root', modelDir, '--model-root', dir]);
    const resumed = cli(['search', '--db', db, '--resume', '--queue', r.url, '--json']);
    await finished(resumed);
    sameSearch(dump(db), reference);
    // The resumed session adds the right worker beside the first session's.
    const after = workersIn(db);
    assert.deepEqual(after.map((w) => w.worker).sort(), [nameOf(wrong), nameOf(right)].sort());
    assert.deepEqual(after.find((w) => w.worker === nameOf(wrong)), w1, 'the first session\'s row is kept as it was');
    assert.ok(after.find((w) => w.worker === nameOf(right))!.jobs_done > 0);
    right.child.kill('SIGTERM');
    await right.exited;
  } finally {
    await r.stop();
  }
});

test('a malformed --queue is bad input', () => {
  const r = spawnSync(process.execPath, ['bin/symprune.mjs', 'worker', '--queue', 'http://x'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trim(), 'symprune: --queue http://x: expected redis://HOST:PORT (not http:)');
});
