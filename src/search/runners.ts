/** How a search gets a task runner once its data is ready: the local thread pool by default. */
import { EvalPool, defaultWorkers } from '../eval/pool.ts';
import type { TaskRunner } from '../eval/task-runner.ts';
import type { WorkerInit } from '../eval/worker.ts';
import type { PreparedData } from './setup.ts';
import type { SearchSettings } from './settings.ts';

/** What a runner is started for: the run's prepared data and settings. */
export interface RunnerJob {
  data: PreparedData;
  settings: SearchSettings;
  /** sha256 of the model file and of the fitness tokens. */
  modelSha256: string;
  tokensSha256: string;
}

export interface RunnerFactory {
  /** Tasks the runner will run at once (a new run's default batch is twice this). */
  readonly parallelism: number;
  start(job: RunnerJob): Promise<TaskRunner>;
}

/** Fault injection for tests (see WorkerInit.fault): what the N-th perplexity task does. */
export type Fault = { at: number; kind: 'crash' | 'hang' | 'slow' };

/** The local pool: `threads` worker threads in this process, the data handed over in shared memory. */
export function localRunner(threads = defaultWorkers(), fault: Fault | null = null): RunnerFactory {
  return {
    parallelism: threads,
    async start(job) {
      const workerData: WorkerInit = { ...job.data.workerInit, fault: fault ? { ...fault, counter: new Int32Array(new SharedArrayBuffer(4)) } : null };
      return new EvalPool({ filename: new URL('../eval/worker-entry.mjs', import.meta.url), workerData, threads, taskTimeoutMs: 0 });
    },
  };
}
