/** How a search gets a task runner once its data is ready: the local thread pool by default. */
import { EvalPool, WORKER_FILE, defaultWorkers } from '../eval/pool.ts';
import { fileSha256, type JobSpec } from '../eval/job.ts';
import { QueueRunner, redisConnection, type WorkerWatch } from '../eval/queue.ts';
import type { TaskOutcome, TaskRunner } from '../eval/task-runner.ts';
import type { WorkerInit, WorkerTask } from '../eval/worker.ts';
import { settingSpecs, type PreparedData } from './setup.ts';
import { STREAMED_BATCH } from './streamed-setup.ts';
import { StreamedCandidates } from '../eval/streamed-candidates.ts';
import { LayerStatsFile } from '../prune/stats-file.ts';
import { openModelSource } from '../model/source.ts';
import { resolveModel } from '../model/load.ts';
import type { SearchSettings } from './settings.ts';

/** What a runner is started for: the run's prepared data and settings. */
export interface RunnerJob {
  data: PreparedData;
  settings: SearchSettings;
  /** sha256 of the model file and of the fitness tokens. */
  modelSha256: string;
  tokensSha256: string;
  /** The model file and the statistics file the workers read. */
  modelPath: string;
  /** Identifies the run (stable across resumes): task keys are unique within it. */
  runKey: string;
  /** Told of the job queue's workers (a local pool has none to tell of). */
  watch?: WorkerWatch;
}

export interface RunnerFactory {
  /** Tasks the runner will run at once (a new run's default batch is twice this). */
  readonly parallelism: number;
  /** Worker threads in this process (each holds the model: see memory.ts). */
  readonly localThreads: number;
  start(job: RunnerJob): Promise<TaskRunner>;
}

/** Fault injection for tests (see WorkerInit.fault): what the N-th perplexity task does. */
export type Fault = { at: number; kind: 'crash' | 'hang' | 'overtime' };

/** The local pool: `threads` worker threads in this process, the data handed over in shared memory. */
export function localRunner(threads = defaultWorkers(), fault: Fault | null = null): RunnerFactory {
  return {
    parallelism: threads,
    localThreads: threads,
    async start(job) {
      if (!job.data.workerInit) throw new Error('localRunner: the run is searched block by block (use streamedRunner)');
      const workerData: WorkerInit = { ...job.data.workerInit, fault: fault ? { ...fault, counter: new Int32Array(new SharedArrayBuffer(4)) } : null };
      return new EvalPool({ filename: WORKER_FILE, workerData, threads, taskTimeoutMs: 0 });
    },
  };
}

/**
 * A model over the memory budget: one evaluator in this process, holding one decoder block
 * at a time (streamed-candidates.ts), with `threads` onnxruntime threads (default: all cores).
 */
export function streamedRunner(threads?: number): RunnerFactory {
  return {
    parallelism: 1,
    localThreads: 0,
    async start(job) {
      const source = await openModelSource(resolveModel(job.modelPath));
      try {
        const stats = LayerStatsFile.open(job.data.statsFile, job.data.layers, { G: false, X: true });
        const settings = job.data.settings.map((x) => ({ sparsity: x.sparsity, pattern: x.patternSpec, ...(x.layerSparsity ? { layerSparsity: x.layerSparsity } : {}) }));
        return new StreamedCandidates({ source, layers: job.data.layers, stats, tokens: job.data.tokens, seqlen: job.settings.seqlen, settings, threads, batchSize: STREAMED_BATCH });
      } catch (e) {
        await source.close();
        throw e;
      }
    },
  };
}

/** What every task of the run is evaluated against, named by content for workers elsewhere. */
export async function jobSpec(job: RunnerJob): Promise<JobSpec> {
  const s = job.settings;
  return {
    model: { sha256: job.modelSha256, path: job.modelPath },
    statistics: { sha256: await fileSha256(job.data.statsFile), path: job.data.statsFile },
    fitness: { data: s.fitnessData, tokensSha256: job.tokensSha256 },
    seqlen: s.seqlen,
    sparsity: s.sparsity,
    pattern: s.pattern,
    ...(job.data.settings[0]?.layerSparsity ? { layerSparsity: job.data.settings[0].layerSparsity } : {}),
    ...(job.data.settings.length > 1 ? { settings: settingSpecs(job.data.settings) } : {}),
  };
}

/**
 * The job queue at `url` (redis://HOST:PORT): `symprune worker` processes anywhere evaluate
 * the tasks. `parallelism` sizes the default batch (about the number of workers).
 * InputError when the URL is malformed; the connection is made when the run starts.
 */
export function queueRunner(url: string, opts: { parallelism?: number; flag?: string; localThreads?: number } = {}): RunnerFactory {
  const connection = redisConnection(url, opts.flag);
  const local = opts.localThreads ? localRunner(opts.localThreads) : null;
  const parallelism = (opts.parallelism ?? 2) + (opts.localThreads ?? 0);
  return {
    parallelism,
    localThreads: opts.localThreads ?? 0,
    async start(job) {
      const queue = await QueueRunner.open({ connection, spec: await jobSpec(job), runKey: job.runKey, parallelism, label: opts.flag, watch: job.watch });
      return local ? new LocalFirst((await local.start(job)) as EvalPool, queue) : queue;
    },
  };
}

/** Local threads and the queue together: a task goes to a free local thread, else to the queue. */
class LocalFirst implements TaskRunner {
  readonly local = true;
  constructor(
    private readonly pool: EvalPool,
    private readonly queue: TaskRunner,
  ) {}
  get parallelism(): number {
    return this.pool.parallelism + this.queue.parallelism;
  }
  run<T>(task: object): Promise<TaskOutcome<T>> {
    return this.pool.idle || (task as WorkerTask).kind === 'weights' ? this.pool.run<T>(task) : this.queue.run<T>(task);
  }
  setTaskTimeout(ms: number): void {
    this.pool.setTaskTimeout(ms);
    this.queue.setTaskTimeout(ms);
  }
  async close(): Promise<void> {
    await Promise.all([this.pool.close(), this.queue.close()]);
  }
}
