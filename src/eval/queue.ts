/**
 * Candidate evaluation through a job queue (BullMQ on Redis), so that `symprune worker`
 * processes on any machine evaluate a search's candidates. The coordinator (the search)
 * stays the only writer of the run log; workers only answer tasks.
 *
 * Delivery is at least once, and results are idempotent: a task's job id is its key
 * (run, candidate, budget and mask fingerprint), so a task sent again (a coordinator
 * resumed after a kill, a job re-queued after its worker died) finds the finished job
 * instead of being paid twice. Failures that may pass (a worker thread crashing) are retried
 * with exponential backoff; a job whose worker stops renewing its lock (killed, machine
 * gone) goes back to the queue; a job a worker cannot satisfy (it has no file with the
 * model's hash) fails at once with the reason, and the search stops on it.
 *
 * Results are taken from the queue's events, and every pending job is also looked up on a
 * timer: events missed while Redis was away are caught up, and a job lost with Redis's
 * data is sent again.
 *
 * The same timer asks Redis which workers are connected (each worker names its connection
 * host:pid) and which of them hold a job, and tells a WorkerWatch, with each finished job's
 * worker: the run log keeps the workers' state without the workers writing to it.
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type ConnectionOptions, type Job } from 'bullmq';
import { InputError } from '../errors.ts';
import type { JobSpec } from './job.ts';
import { specKey } from './job.ts';
import type { TaskOutcome, TaskRunner } from './task-runner.ts';
import type { WorkerReply, WorkerTask } from './candidate-worker.ts';

export const QUEUE_NAME = 'symprune-eval';

/** The failure reason prefix of a job the worker cannot satisfy. */
export const SPEC_FAILURE = 'job spec: ';

/** A job's data: the task and what it is evaluated against. */
export interface QueueJobData {
  spec: JobSpec;
  specKey: string;
  task: WorkerTask;
}

/** A finished job's value: the worker's reply, its own time, and who it was. */
export interface QueueJobResult {
  reply: WorkerReply<unknown>;
  seconds: number;
  /** Its process id and host, and its name on the queue (host:pid; absent from older workers). */
  worker: number;
  host: string;
  name?: string;
  threads?: number;
  device?: string;
}

/** A worker as a job's result names it. */
export interface QueueWorkerIdentity {
  name: string;
  host: string;
  pid: number | null;
  threads?: number | null;
  device?: string | null;
}

/** Who hears of the queue's workers (the run log's workers table). */
export interface WorkerWatch {
  /** A job of this run that a worker finished: its evaluation ok or failed, a perplexity or a mask, its time. */
  jobDone(w: QueueWorkerIdentity, job: { ok: boolean; perplexity: boolean; seconds: number }, at: Date): void;
  /** The workers connected to the queue now, and the names of those holding a job; both empty once the run stops listening. */
  seen(connected: readonly QueueWorkerIdentity[], busy: readonly string[], at: Date): void;
}

/** A worker's name on the queue. */
export function workerName(host: string, pid: number): string {
  return `${host}:${pid}`;
}

/** A worker known only by its name (host:pid). */
function byName(name: string): QueueWorkerIdentity {
  const m = /^(.*):(\d+)$/.exec(name);
  return m ? { name, host: m[1]!, pid: Number(m[2]) } : { name, host: name, pid: null };
}

/** `redis://[:password@]host:port[/db]` as BullMQ connection options; InputError when it is not one. */
export function redisConnection(url: string, flag = 'queue'): ConnectionOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`${flag} ${url}: expected redis://HOST:PORT`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new InputError(`${flag} ${url}: expected redis://HOST:PORT (not ${u.protocol})`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new InputError(`${flag} ${url}: the database number must be a non-negative integer`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    db,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    // Wait through a Redis restart instead of failing commands.
    maxRetriesPerRequest: null,
  };
}

export interface QueueRunnerOptions {
  connection: ConnectionOptions;
  spec: JobSpec;
  /** Identifies the run: task keys are unique within it. */
  runKey: string;
  parallelism: number;
  /** Attempts per job when the worker fails it (not for replies that report a failed evaluation). */
  attempts?: number;
  backoffMs?: number;
  /** How often pending jobs are looked up (ms). */
  sweepMs?: number;
  /** How long finished jobs are kept, so a resumed coordinator finds them (s). */
  keepSeconds?: number;
  /** How errors name the queue (the CLI: its flag). */
  label?: string;
  /** Told of the workers (each sweep, and each finished job). */
  watch?: WorkerWatch;
}

interface Pending {
  data: QueueJobData;
  settle: (o: TaskOutcome<unknown>) => void;
  fail: (e: Error) => void;
  /** A job found failed from an earlier session is retried once. */
  retried: boolean;
  checking: boolean;
}

export class QueueRunner implements TaskRunner {
  private timeoutMs = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly sweep: NodeJS.Timeout;
  private readonly spec: { spec: JobSpec; specKey: string };
  /** Jobs finished before this moment belong to an earlier session (a resumed run): not counted again. */
  private readonly opened = Date.now();
  private closed = false;
  private watching: Promise<void> | null = null;

  private constructor(
    private readonly queue: Queue<QueueJobData, QueueJobResult>,
    private readonly events: QueueEvents,
    private readonly o: QueueRunnerOptions,
  ) {
    this.spec = { spec: o.spec, specKey: specKey(o.spec) };
    const onFinished = ({ jobId }: { jobId: string }): void => {
      if (this.pending.has(jobId)) void this.check(jobId);
    };
    events.on('completed', onFinished);
    events.on('failed', onFinished);
    this.sweep = setInterval(() => {
      for (const id of this.pending.keys()) void this.check(id);
      this.watchWorkers();
    }, o.sweepMs ?? 2000);
    this.watchWorkers(); // the workers already waiting, from the start
  }

  private watchWorkers(): void {
    if (this.o.watch && !this.watching) this.watching = this.lookAtWorkers().finally(() => (this.watching = null));
  }

  /** Which workers are connected (named connections) and which hold a job, told to the watch. */
  private async lookAtWorkers(): Promise<void> {
    try {
      const [clients, active] = await Promise.all([this.queue.getWorkers(), this.queue.getJobs(['active'])]);
      // A Redis without CLIENT LIST (some hosted ones) gives no list: states stay as job results left them.
      if (clients.some((c) => c.rawname === undefined)) return;
      // A named worker's connection is `<prefix>:<queue>:w:<name>`; unnamed ones (none of ours) are left out.
      const names = clients.map((c) => String(c.rawname ?? '')).filter((n) => n.includes(':w:')).map((n) => n.slice(n.indexOf(':w:') + 3));
      const busy = active.map((j) => j.processedBy).filter((n): n is string => !!n);
      if (!this.closed) this.o.watch!.seen([...new Set(names)].map(byName), busy, new Date());
    } catch {
      // Redis away: the next sweep looks again.
    }
  }

  /** Connect to the queue; InputError when Redis cannot be reached. */
  static async open(o: QueueRunnerOptions): Promise<QueueRunner> {
    const queue = new Queue<QueueJobData, QueueJobResult>(QUEUE_NAME, { connection: o.connection });
    const events = new QueueEvents(QUEUE_NAME, { connection: o.connection });
    queue.on('error', () => {}); // connection errors: ioredis reconnects; pending jobs wait
    events.on('error', () => {});
    const c = o.connection as { host?: string; port?: number };
    const ready = Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    const timeout = new Promise<never>((_, rej) => setTimeout(() => rej(new InputError(`${o.label ?? 'queue'}: no Redis answering at ${c.host}:${c.port}`)), 10_000).unref());
    try {
      await Promise.race([ready, timeout]);
    } catch (e) {
      await Promise.allSettled([queue.close(), events.close()]);
      throw e;
    }
    return new QueueRunner(queue, events, o);
  }

  get parallelism(): number {
    return this.o.parallelism;
  }

  readonly local = false;

  setTaskTimeout(ms: number): void {
    this.timeoutMs = ms;
  }

  run<T>(task: object): Promise<TaskOutcome<T>> {
    const t = task as WorkerTask;
    // Job ids may not hold ':'; keys are unique within the run.
    const id = `${this.o.runKey}.${(t.key ?? randomUUID()).replace(/[:]/g, '.')}`;
    const data: QueueJobData = { ...this.spec, task: { ...t, timeoutMs: t.timeoutMs ?? this.timeoutMs } };
    return new Promise<TaskOutcome<T>>((resolve, reject) => {
      this.pending.set(id, { data, settle: resolve as (o: TaskOutcome<unknown>) => void, fail: reject, retried: false, checking: false });
      void this.add(id, data).then(() => this.check(id));
    });
  }

  private add(id: string, data: QueueJobData): Promise<Job<QueueJobData, QueueJobResult>> {
    const keep = { age: this.o.keepSeconds ?? 7 * 86400 };
    return this.queue.add('eval', data, {
      jobId: id,
      attempts: this.o.attempts ?? 3,
      backoff: { type: 'exponential', delay: this.o.backoffMs ?? 1000 },
      removeOnComplete: keep,
      removeOnFail: keep,
    });
  }

  /** Settle a pending task if its job has finished; send it again if Redis lost it. */
  private async check(id: string): Promise<void> {
    const p = this.pending.get(id);
    if (!p || p.checking) return;
    p.checking = true;
    try {
      // The state first, then the job: a job read before its state could predate its result.
      const state = await this.queue.getJobState(id);
      if (state === 'unknown') {
        await this.add(id, p.data);
        return;
      }
      if (state !== 'completed' && state !== 'failed') return;
      const job = await this.queue.getJob(id);
      if (!job) return;
      if (state === 'completed') {
        if (job.returnvalue) this.finish(id, job);
      } else if (job.failedReason?.startsWith(SPEC_FAILURE)) {
        this.pending.delete(id);
        this.failedFor(job);
        p.fail(new InputError(`${job.failedReason.slice(SPEC_FAILURE.length)}; the search stopped: fix the worker (or its --model-root) and resume it`));
      } else if (!p.retried) {
        // Failed before this session (a resumed run): one more round of attempts.
        p.retried = true;
        await job.retry('failed');
      } else {
        this.pending.delete(id);
        p.settle({ status: 'crash', error: job.failedReason ?? 'job failed', seconds: 0 });
        this.failedFor(job);
      }
    } catch {
      // Redis away: the sweep looks again.
    } finally {
      p.checking = false;
    }
  }

  private finish(id: string, job: Job<QueueJobData, QueueJobResult>): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const r = job.returnvalue;
    const reply = r.reply;
    if (reply.ok) p.settle({ status: 'ok', value: { ...(reply.value as object), worker: r.worker }, seconds: r.seconds });
    else p.settle({ status: reply.timeout ? 'timeout' : 'error', error: reply.error, seconds: r.seconds });
    const name = r.name ?? workerName(r.host, r.worker);
    this.tell(job, { name, host: r.host, pid: r.worker, threads: r.threads ?? null, device: r.device ?? null }, { ok: reply.ok, perplexity: p.data.task.kind !== 'mask', seconds: r.seconds });
  }

  /** A job that failed for good counts against the worker that last ran it. */
  private failedFor(job: Job<QueueJobData, QueueJobResult>): void {
    if (job.processedBy) this.tell(job, byName(job.processedBy), { ok: false, perplexity: false, seconds: 0 });
  }

  private tell(job: Job<QueueJobData, QueueJobResult>, w: QueueWorkerIdentity, done: { ok: boolean; perplexity: boolean; seconds: number }): void {
    // A job finished before this session opened was counted by the session that saw it
    // (finishedOn is the worker's clock: machines are assumed to keep time, as BullMQ's locks assume).
    if (this.closed || !this.o.watch || (job.finishedOn ?? Date.now()) < this.opened) return;
    this.o.watch.jobDone(w, done, new Date(job.finishedOn ?? Date.now()));
  }

  async close(): Promise<void> {
    clearInterval(this.sweep);
    await this.watching;
    this.closed = true;
    // The run stops listening: its workers are gone from it (they may serve other runs).
    this.o.watch?.seen([], [], new Date());
    for (const p of this.pending.values()) p.settle({ status: 'crash', error: 'the queue runner closed', seconds: 0 });
    this.pending.clear();
    await Promise.allSettled([this.queue.close(), this.events.close()]);
  }
}
