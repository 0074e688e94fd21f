/**
 * A piscina pool of candidate-evaluation workers with per-task timeouts and crash
 * recovery. At most one task runs per worker and no more tasks are handed to piscina than
 * there are workers, so a task's timeout clock starts when it starts running.
 *
 * Timeouts are two-level, because terminating a worker thread while onnxruntime is inside
 * session.run aborts the whole process (a native exception escapes; seen with
 * onnxruntime-node 1.30): the task carries its deadline and the worker stops itself
 * between batches of windows (status `timeout`, the worker lives on); only a task still
 * running at twice its deadline plus a grace (10 s), i.e. stuck outside onnxruntime, is aborted by
 * terminating its worker. A worker that dies fails only its own task (status `crash`);
 * piscina starts a replacement and the caller carries on.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { TransferListItem } from 'node:worker_threads';
import type { TaskOutcome, TaskRunner } from './task-runner.ts';
import type { WorkerReply } from './candidate-worker.ts';

export type { TaskOutcome };


export interface PoolOptions {
  /** Worker module (an .mjs file that registers tsx, then loads the TypeScript handler). */
  filename: string | URL;
  workerData: unknown;
  threads: number;
  /** Per-task timeout in milliseconds (0 = none); tasks get it as their `timeoutMs` field. */
  taskTimeoutMs: number;
  /** Extra time past twice the timeout before a silent worker is terminated (default 10 s). */
  hardGraceMs?: number;
}

export class EvalPool implements TaskRunner {
  private readonly pool: Piscina;
  private timeoutMs: number;
  private readonly hardGraceMs: number;
  private running = 0;
  private waiting: (() => void)[] = [];
  readonly threads: number;
  get parallelism(): number {
    return this.threads;
  }
  readonly local = true;
  /** A thread is free for a task now. */
  get idle(): boolean {
    return this.running < this.threads;
  }
  /** Workers lost to crashes and timeouts so far (each was replaced). */
  replaced = 0;

  constructor(opts: PoolOptions) {
    this.threads = Math.max(1, Math.floor(opts.threads));
    this.timeoutMs = opts.taskTimeoutMs;
    this.hardGraceMs = opts.hardGraceMs ?? 10_000;
    const filename = opts.filename instanceof URL ? fileURLToPath(opts.filename) : opts.filename;
    this.pool = new Piscina({
      filename,
      workerData: opts.workerData,
      minThreads: this.threads,
      maxThreads: this.threads,
      concurrentTasksPerWorker: 1,
      idleTimeout: 2 ** 31 - 1, // workers hold a loaded model: never retire them for idling
      // Node's default worker execArgv would repeat the parent's loader flags; the entry file registers tsx itself.
      execArgv: [],
    });
    // A worker that dies between tasks is replaced by piscina; nothing to fail.
    this.pool.on('error', () => {});
  }

  private async acquire(): Promise<void> {
    if (this.running < this.threads) {
      this.running++;
      return;
    }
    await new Promise<void>((res) => this.waiting.push(res));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }

  /** Run one task; never rejects: failures come back as outcomes. */
  async run<T>(task: object, transferList?: TransferListItem[], timeoutMs = this.timeoutMs): Promise<TaskOutcome<T>> {
    await this.acquire();
    const t0 = performance.now();
    const ctl = new AbortController();
    const hardMs = 2 * timeoutMs + this.hardGraceMs;
    const timer = timeoutMs > 0 ? setTimeout(() => ctl.abort(new Error('timeout')), hardMs) : undefined;
    try {
      const reply = (await this.pool.run({ ...task, timeoutMs }, { signal: ctl.signal, transferList: transferList as never })) as WorkerReply<T>;
      const seconds = (performance.now() - t0) / 1000;
      if (reply.ok) return { status: 'ok', value: reply.value, seconds };
      return { status: reply.timeout ? 'timeout' : 'error', error: reply.error, seconds };
    } catch (e) {
      const seconds = (performance.now() - t0) / 1000;
      this.replaced++;
      if (ctl.signal.aborted) return { status: 'timeout', error: `no answer after ${(hardMs / 1000).toFixed(1)} s; worker terminated`, seconds };
      return { status: 'crash', error: oneLine((e as Error).message ?? String(e)), seconds };
    } finally {
      if (timer) clearTimeout(timer);
      this.release();
    }
  }

  /** Change the default per-task time limit (e.g. once a first evaluation has been timed). */
  setTaskTimeout(ms: number): void {
    this.timeoutMs = ms;
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

function oneLine(s: string): string {
  return s.split('\n')[0]!.slice(0, 500);
}

/**
 * The worker module: from source, an entry that registers tsx and loads worker.ts; compiled
 * (dist/), worker.js itself.
 */
export const WORKER_FILE = new URL(import.meta.url.endsWith('.ts') ? './worker-entry.mjs' : './worker.js', import.meta.url);

/** Default worker count: one per core (the main thread mostly waits on them). */
export function defaultWorkers(): number {
  return Math.max(1, availableParallelism());
}

/** A Float32Array copy in shared memory, so every worker reads the same bytes. */
export function shared<T extends Float32Array | Int32Array>(a: T): T {
  const Ctor = a.constructor as { new (b: SharedArrayBuffer): T; BYTES_PER_ELEMENT: number };
  const out = new Ctor(new SharedArrayBuffer(a.length * Ctor.BYTES_PER_ELEMENT));
  out.set(a as never);
  return out;
}
