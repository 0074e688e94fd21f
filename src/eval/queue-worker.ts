/**
 * The worker end of the queue (`symprune worker`): take jobs one at a time, load and check
 * what the job's spec names (model and statistics by sha256, fitness tokens by the hash of
 * their ids; kept loaded while jobs of the same spec follow), and answer each task from a
 * thread of a one-thread local pool. The thread does the work, so this thread stays free to
 * renew the job's lock however long an evaluation takes; a job whose lock lapses (this
 * process killed) goes back to the queue for another worker.
 */
import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { InputError } from '../errors.ts';
import { EvalPool, WORKER_FILE } from './pool.ts';
import { JobSpecError, loadJob } from './job.ts';
import { QUEUE_NAME, SPEC_FAILURE, workerName, type QueueJobData, type QueueJobResult } from './queue.ts';
import type { WorkerFault } from './candidate-worker.ts';
import type { Device } from '../onnx/session.ts';

export interface QueueWorkerOptions {
  connection: ConnectionOptions;
  /** Where this machine keeps models and statistics; empty: the paths the coordinator names (a shared filesystem). */
  modelRoots: string[];
  /** onnxruntime intra-op threads for the session (default 1). */
  threads?: number;
  device?: Device;
  /** A job whose worker has not renewed its lock for this long goes back to the queue (ms, default 30 s). */
  lockMs?: number;
  /** Stop taking jobs (the job in progress is finished first). */
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Fault injection for tests. */
  fault?: Omit<WorkerFault, 'counter'> | null;
}

/** Run until the signal aborts. */
export async function runQueueWorker(o: QueueWorkerOptions): Promise<{ jobs: number }> {
  const log = o.log ?? (() => {});
  const me = workerName(hostname(), process.pid);
  const fault = o.fault ? { ...o.fault, counter: new Int32Array(new SharedArrayBuffer(4)) } : null;
  let loaded: { key: string; pool: EvalPool } | null = null;
  let jobs = 0;

  const poolFor = async (d: QueueJobData): Promise<EvalPool> => {
    if (loaded?.key === d.specKey) return loaded.pool;
    await loaded?.pool.close();
    loaded = null;
    let init;
    try {
      init = await loadJob(d.spec, o.modelRoots, { threads: o.threads });
    } catch (e) {
      if (e instanceof JobSpecError || e instanceof InputError) {
        log(`cannot take jobs of spec ${d.specKey}: ${e.message}`);
        throw new UnrecoverableError(`${SPEC_FAILURE}worker ${me}: ${e.message}`);
      }
      throw e;
    }
    log(`loaded spec ${d.specKey}: ${init.layers.length} prunable layers, ${init.tokens.length} fitness tokens`);
    loaded = { key: d.specKey, pool: new EvalPool({ filename: WORKER_FILE, workerData: { ...init, device: o.device, fault }, threads: 1, taskTimeoutMs: 0 }) };
    return loaded.pool;
  };

  const processor = async (job: Job<QueueJobData, QueueJobResult>): Promise<QueueJobResult> => {
    const pool = await poolFor(job.data);
    const t0 = performance.now();
    const out = await pool.run(job.data.task, undefined, job.data.task.timeoutMs ?? 0);
    const seconds = (performance.now() - t0) / 1000;
    // A thread that died may have met a passing fault: BullMQ retries the job with backoff.
    if (out.status === 'crash') throw new Error(`evaluation thread crashed on ${me}: ${out.error}`);
    jobs++;
    const reply = out.status === 'ok' ? { ok: true as const, value: out.value } : { ok: false as const, error: out.error, timeout: out.status === 'timeout' };
    return { reply, seconds, worker: process.pid, host: hostname(), name: me, threads: o.threads ?? 1, device: o.device ?? 'cpu' };
  };

  const lockMs = o.lockMs ?? 30_000;
  const worker = new Worker<QueueJobData, QueueJobResult>(QUEUE_NAME, processor, {
    connection: o.connection,
    // Its connection's name: the coordinator lists the connected workers by it.
    name: me,
    concurrency: 1,
    lockDuration: lockMs,
    stalledInterval: Math.max(500, Math.floor(lockMs / 2)),
    maxStalledCount: 2,
  });
  worker.on('error', (e) => log(`queue: ${e.message.split('\n')[0]}`));
  worker.on('failed', (job, e) => log(`job ${job?.id} failed: ${e.message.split('\n')[0]}`));
  await worker.waitUntilReady();
  log(`worker ${me} waiting for jobs on ${QUEUE_NAME}`);
  if (o.signal && !o.signal.aborted) await new Promise<void>((res) => o.signal!.addEventListener('abort', () => res(), { once: true }));
  else if (!o.signal) await new Promise<void>(() => {});
  await worker.close();
  await (loaded as { pool: EvalPool } | null)?.pool.close();
  return { jobs };
}
