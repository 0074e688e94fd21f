/**
 * A search that evolves the layer-wise allocation of a fixed metric (`search --evolve
 * allocation --metric FILE`): the individuals are expressions over the per-block
 * statistics R, A, M, D (src/search-space/allocation-expr.ts), each pruning the model with
 * the metric at the sparsities its scores give each block (src/prune/allocation.ts).
 *
 * Everything else is the metric search's: the same engine (in its allocation language),
 * the same fitness with its two budgets and mask fingerprints, the same SQLite log (an
 * individual's infix is its allocation expression; the run's configuration holds
 * `evolveAllocation`). The candidates reach the workers as the metric's tasks with their
 * own sparsity per layer: the block statistics are computed here once, from the dense
 * weights and X, and each candidate's sparsities cost microseconds.
 */
import { InputError } from '../errors.ts';
import { readLayerWeight } from '../prune/discover.ts';
import { allocateByExpression, blockStatistics, layerSparsities } from '../prune/allocation.ts';
import { KNOWN_ALLOCATIONS, parseMetric, toInfix, validateTree, type BlockStatistics, type Tree } from '../search-space/index.ts';
import type { TaskOutcome, TaskRunner } from '../eval/task-runner.ts';
import type { MaskReply, PplReply, WorkerTask } from '../eval/worker.ts';
import type { RunStore } from '../store/store.ts';
import type { PreparedData } from './setup.ts';
import type { SearchSettings, SettingNames } from './settings.ts';

/** What an allocation search keeps fixed: the metric (infix), R's outlier threshold M and the spread λ. */
export interface AllocationSearch {
  metric: string;
  m: number;
  lambda: number;
}

/**
 * The checks of an allocation search's settings (before any work). Every block's sparsity
 * stays within 2λ of s, so s ± 2λ must lie in [0, 1] for any expression to be usable.
 */
export function checkAllocationSearch(e: AllocationSearch, s: Pick<SearchSettings, 'sparsity' | 'pattern' | 'allocation'> & { settings?: unknown[] }, n: Pick<SettingNames, 'sparsity' | 'allocation' | 'pattern'>, flag = '--evolve allocation'): void {
  const why = validateTree(parseMetric(e.metric));
  if (why) throw new InputError(`${flag}: the metric ${e.metric}: ${why}`);
  if (!(Number.isFinite(e.m) && e.m > 0)) throw new InputError(`--owl-m ${e.m}: must be a positive number`);
  if (!(Number.isFinite(e.lambda) && e.lambda > 0 && e.lambda < 0.5)) throw new InputError(`--owl-lambda ${e.lambda}: must be a number in (0, 0.5) for an allocation search`);
  if (s.allocation && s.allocation.kind !== 'uniform') throw new InputError(`${flag}: the allocation is what is evolved; leave out ${n.allocation}`);
  if ((s.settings?.length ?? 1) > 1) throw new InputError(`${flag}: evolves the allocation at one sparsity; give one setting`);
  if (s.pattern !== 'unstructured') throw new InputError(`${flag}: needs ${n.pattern} unstructured (N:M fixes every block at 50%)`);
  if (s.sparsity - 2 * e.lambda < 0 || s.sparsity + 2 * e.lambda > 1)
    throw new InputError(`${flag}: ${n.sparsity} ${s.sparsity} with --owl-lambda ${e.lambda}: a block may move up to 2·lambda from the sparsity, outside [0, 1]; lower --owl-lambda`);
}

/** The allocation search of a prepared run: the block statistics and each candidate's sparsity per layer. */
export class AllocationCandidates {
  readonly metric: Tree;
  readonly blocks: { blocks: number[]; params: number[]; stats: BlockStatistics };

  constructor(
    readonly search: AllocationSearch,
    private readonly sparsity: number,
    private readonly data: PreparedData,
  ) {
    this.metric = parseMetric(search.metric);
    const X = new Map(data.workerInit!.layers.map((l) => [l.name, l.X!]));
    this.blocks = blockStatistics(data.layers, (l) => readLayerWeight(data.model, l), (l) => X.get(l.name)!, search.m);
  }

  /** Sparsity of each prunable layer (the workers' order) under an allocation expression. */
  layerSparsity(tree: Tree): number[] {
    const a = allocateByExpression(tree, this.blocks, { sparsity: this.sparsity, lambda: this.search.lambda });
    return layerSparsities(this.data.layers, a.sparsity, this.sparsity);
  }

  /**
   * The runner the fitness sees: a candidate's `mask` and `ppl` tasks carry its allocation
   * expression as their tree, and go to the workers as the metric's with its layer sparsities.
   */
  runner(inner: TaskRunner): TaskRunner {
    const rewrite = (task: object): object => {
      const t = task as WorkerTask;
      return t.kind === 'mask' || t.kind === 'ppl' ? { ...t, tree: this.metric, layerSparsity: this.layerSparsity(t.tree) } : t;
    };
    return {
      run: <T>(task: object): Promise<TaskOutcome<T>> => inner.run<T>(rewrite(task)),
      setTaskTimeout: (ms: number) => inner.setTaskTimeout(ms),
      close: () => inner.close(),
      get parallelism() {
        return inner.parallelism;
      },
      get local() {
        return inner.local;
      },
    };
  }

  /**
   * The yardsticks of the run, once, at the full budget: the metric with the uniform
   * allocation (`metric`) and with OWL's (`metric+owl`, the expression mms(R)).
   */
  async baselines(inner: TaskRunner, store: RunStore, s: SearchSettings, log: (l: string) => void): Promise<void> {
    const have = new Set(store.baselines().map((b) => b.method));
    const rows: [string, number[] | undefined][] = [
      ['metric', undefined],
      ['metric+owl', this.layerSparsity(KNOWN_ALLOCATIONS.owl.tree)],
    ];
    for (const [method, layerSparsity] of rows.filter(([m]) => !have.has(m))) {
      const extra = layerSparsity ? { layerSparsity } : {};
      const mask = await inner.run<MaskReply>({ kind: 'mask', tree: this.metric, ...extra, key: `baseline-mask/${method}` } satisfies WorkerTask);
      const r: TaskOutcome<PplReply> =
        mask.status === 'ok'
          ? await inner.run<PplReply>({ kind: 'ppl', tree: this.metric, fingerprint: mask.value.fingerprint, maxTokens: s.evalTokens, ...extra, key: `baseline/${method}` } satisfies WorkerTask)
          : mask;
      store.addBaseline({ method, pattern: s.pattern, sparsity: s.sparsity, split: s.fitnessData, tokens: r.status === 'ok' ? r.value.tokens : 0, ppl: r.status === 'ok' ? r.value.ppl : null, seconds: r.seconds, error: r.status === 'ok' ? null : `${r.status}: ${r.error}` });
      log(`  ${method} (${toInfix(this.metric)}${layerSparsity ? ', OWL' : ', uniform'}): ${r.status === 'ok' ? r.value.ppl.toFixed(3) : r.error}`);
    }
  }
}
