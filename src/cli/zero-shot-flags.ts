/**
 * `--task FILE.jsonl` (repeatable) for eval, prune --eval and baselines: zero-shot
 * multiple-choice tasks (src/eval/zero-shot.ts). prune and baselines score the two
 * shipped Brown tasks unless told otherwise (`--task none` for no tasks).
 */
import path from 'node:path';
import type { Argv } from 'yargs';
import { InputError } from '../errors.ts';
import { loadTask, type Task, type TaskResult } from '../eval/zero-shot.ts';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer.ts';
import { REPO_ROOT } from '../model/load.ts';
import { inputFilesFlag } from './validate.ts';

/** The shipped tasks, made by scripts/make-zero-shot-tasks.ts from brown:test. */
export const SHIPPED_TASKS = ['brown-last-word', 'brown-continuation'].map((n) => path.join(REPO_ROOT, 'data', 'tasks', `${n}.jsonl`));

export function taskFlag<T>(y: Argv<T>, shippedByDefault: boolean): Argv<T> {
  return y.option(
    'task',
    inputFilesFlag('task', {
      keyword: 'none',
      describe: `zero-shot task file (JSONL of {"context","choices","gold"}), repeatable${shippedByDefault ? '; default: the shipped data/tasks/brown-last-word and brown-continuation; none: no tasks' : ''}`,
    }),
  ) as never;
}

/** The tasks named by --task (checked before any work), or the shipped ones. */
export function tasksFromArgs(arg: string[] | undefined, shippedByDefault: boolean): Task[] {
  const files = arg === undefined ? (shippedByDefault ? SHIPPED_TASKS : []) : arg.map(String);
  if (files.length === 1 && files[0] === 'none') return [];
  const tasks = files.map((f) => loadTask(f));
  const names = new Set<string>();
  for (const t of tasks) {
    if (names.has(t.name)) throw new InputError(`--task: two tasks are named ${t.name}`);
    names.add(t.name);
  }
  return tasks;
}

/** The tokenizer the tasks' text is encoded with. */
export function taskTokenizer(tasks: Task[], tokenizerPath: string | undefined): Tokenizer | null {
  if (tasks.length === 0) return null;
  if (!tokenizerPath) throw new InputError('--task needs a tokenizer.json beside the model (or --tokenizer)');
  return loadTokenizer(tokenizerPath);
}

/** `name acc 0.312 ± 0.021, acc_norm 0.305 ± 0.021` for each task. */
export function formatTasks(r: Record<string, TaskResult>): string {
  return Object.entries(r)
    .map(([name, t]) => `${name}: acc ${t.acc.toFixed(3)} ± ${t.acc_stderr.toFixed(3)}, acc_norm ${t.acc_norm.toFixed(3)} ± ${t.acc_norm_stderr.toFixed(3)} (n ${t.n}${t.ppl !== undefined ? `, ppl ${t.ppl.toFixed(1)}` : ''})`)
    .join('\n');
}
