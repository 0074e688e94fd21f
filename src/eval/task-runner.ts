/**
 * What the search needs from whatever evaluates candidates: run a task, get its outcome.
 * Two implementations: the local pool of worker threads (pool.ts) and the job queue
 * (queue-runner.ts), whose workers may be on other machines.
 */

/** A task's outcome; a runner never rejects, failures come back here. */
export type TaskOutcome<T> =
  | { status: 'ok'; value: T; seconds: number }
  | { status: 'error' | 'timeout' | 'crash'; error: string; seconds: number };

export interface TaskRunner {
  /** Resolves with the outcome; rejects only when the search cannot go on (an InputError saying why). */
  run<T>(task: object): Promise<TaskOutcome<T>>;
  /** The per-task time limit in milliseconds (0 = none), set once a first evaluation has been timed. */
  setTaskTimeout(ms: number): void;
  close(): Promise<void>;
  /** Tasks it runs at once (the default batch is twice this). */
  readonly parallelism: number;
  /** Whether tasks may carry large arrays (`weights`): true for threads of this process. */
  readonly local: boolean;
}
