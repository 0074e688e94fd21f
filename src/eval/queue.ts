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
  worker: number;
  host: string;
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
    }, o.sweepMs ?? 2000);
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
        if (job.returnvalue) this.finish(id, job.returnvalue);
      } else if (job.failedReason?.startsWith(SPEC_FAILURE)) {
        this.pending.delete(id);
        p.fail(new InputError(`${job.failedReason.slice(SPEC_FAILURE.length)}; the search stopped: fix the worker (or its --model-root) and resume it`));
      } else if (!p.retried) {
        // Failed before this session (a resumed run): one more round of attempts.
        p.retried = true;
        await job.retry('failed');
      } else {
        this.pending.delete(id);
        p.settle({ status: 'crash', error: job.failedReason ?? 'job failed', seconds: 0 });
      }
    } catch {
      // Redis away: the sweep looks again.
    } finally {
      p.checking = false;
    }
  }

  private finish(id: string, r: QueueJobResult): void {
    const p = this.pending.get(id)!;
    this.pending.delete(id);
    const reply = r.reply;
    if (reply.ok) p.settle({ status: 'ok', value: { ...(reply.value as object), worker: r.worker }, seconds: r.seconds });
    else p.settle({ status: reply.timeout ? 'timeout' : 'error', error: reply.error, seconds: r.seconds });
  }

  async close(): Promise<void> {
    clearInterval(this.sweep);
    for (const p of this.pending.values()) p.settle({ status: 'crash', error: 'the queue runner closed', seconds: 0 });
    this.pending.clear();
    await Promise.allSettled([this.queue.close(), this.events.close()]);
  }
}
