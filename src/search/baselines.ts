/**
 * Perplexity of each baseline on the fitness data at the full budget, in the same harness
 * as the candidates (one-shot dense statistics), once per run.
 */
import { cloneModel, findInitializer } from '../onnx/graph-edit.ts';
import { tensorToFloat32 } from '../onnx/tensor.ts';
import { baselineMethod } from '../prune/baselines.ts';
import { CALIBRATION_SEED, loadCalibrationWindows, modelVocabSize } from '../prune/calibration-windows.ts';
import { pruneModel } from '../prune/prune-model.ts';
import type { TaskOutcome, TaskRunner } from '../eval/task-runner.ts';
import { PerplexityEvaluator } from '../eval/perplexity.ts';
import type { PplReply, WorkerTask } from '../eval/worker.ts';
import type { RunStore } from '../store/store.ts';
import { baselines } from '../store/queries.ts';
import type { PreparedData, PreparedSetting } from './setup.ts';
import { settingLabel, type SearchSettings } from './settings.ts';

export async function runBaselines(
  runner: TaskRunner,
  store: RunStore,
  s: SearchSettings,
  data: PreparedData,
  tokenizerPath: string | undefined,
  log: (l: string) => void,
): Promise<void> {
  // One row per method and setting; a run of several settings reports their geometric mean as well (queries.baselines).
  const settings = data.settings;
  const several = settings.length > 1;
  const key = (method: string, pattern: string, sparsity: number): string => `${method}/${pattern}/${sparsity}`;
  const have = new Set(store.baselines().map((b) => key(b.method, b.pattern, b.sparsity)));
  const todo = s.baselines.filter((m) => settings.some((x) => !have.has(key(m, x.pattern, x.sparsity))));
  if (todo.length === 0) return;
  log(`baselines on ${s.fitnessData}${several ? ` at ${settings.map((x) => x.label).join(', ')}` : ''}: ${todo.join(', ')}`);
  const record = (method: string, x: PreparedSetting, r: TaskOutcome<PplReply>, extraSeconds = 0): void => {
    const ok = r.status === 'ok' ? r.value : null;
    store.addBaseline({
      method,
      pattern: x.pattern,
      sparsity: x.sparsity,
      split: s.fitnessData,
      tokens: ok?.tokens ?? 0,
      ppl: ok?.ppl ?? null,
      seconds: r.seconds + extraSeconds,
      error: r.status === 'ok' ? null : `${r.status}: ${r.error}`,
    });
  };
  const pending = (m: string): PreparedSetting[] => settings.filter((x) => !have.has(key(m, x.pattern, x.sparsity)));
  await Promise.all(
    todo
      .filter((m) => m !== 'sparsegpt')
      .flatMap((m) =>
        pending(m).map(async (x) => {
          const i = settings.indexOf(x);
          const task = { kind: 'method', name: m, seed: s.seed, maxTokens: s.evalTokens, ...(several ? { setting: i } : {}), key: several ? `method/${m}/${i}` : `method/${m}` } satisfies WorkerTask;
          record(m, x, await runner.run<PplReply>(task));
        }),
      ),
  );
  if (todo.includes('sparsegpt')) {
    // SparseGPT reconstructs weights from input Hessians (one-shot, like every candidate here).
    const windows = data.windows.length
      ? data.windows
      : await loadCalibrationWindows({ data: s.calibData, nsamples: s.nsamples, seqlen: s.seqlen, tokenizerPath, vocabSize: modelVocabSize(data.model), seed: CALIBRATION_SEED });
    for (const x of pending('sparsegpt')) {
      const t0 = performance.now();
      const m = cloneModel(data.model);
      await pruneModel(m, { method: baselineMethod('sparsegpt'), sparsity: x.sparsity, pattern: x.patternSpec, calibration: 'one-shot', windows, layers: data.layers, ...(x.blockSparsity.size ? { blockSparsity: x.blockSparsity } : {}) });
      const pruneSeconds = (performance.now() - t0) / 1000;
      if (runner.local) {
        const weights: Record<string, Float32Array> = {};
        for (const l of data.layers) weights[l.initializer] = tensorToFloat32(findInitializer(m, l.initializer)!);
        record('sparsegpt', x, await runner.run<PplReply>({ kind: 'weights', weights, maxTokens: s.evalTokens } satisfies WorkerTask), pruneSeconds);
      } else {
        // Whole weight sets do not travel through a queue: the coordinator measures this one itself.
        const t1 = performance.now();
        const ev = await PerplexityEvaluator.create(m, { threads: 1 });
        const r = await ev.evaluate(data.tokens, { seqlen: s.seqlen, maxTokens: s.evalTokens });
        record('sparsegpt', x, { status: 'ok', value: { ppl: r.ppl, nll: r.nll, tokens: r.tokens, worker: 0, seconds: 0 }, seconds: (performance.now() - t1) / 1000 }, pruneSeconds);
      }
    }
  }
  for (const b of store.baselines()) if (todo.includes(b.method)) log(`  ${b.method}${several ? ` at ${settingLabel(b)}` : ''}: ${b.ppl === null ? b.error : b.ppl.toFixed(3)}`);
  if (several) for (const b of baselines(store.db, store.runId)) if (todo.includes(b.method)) log(`  ${b.method}, geometric mean over the settings: ${b.ppl === null ? b.error : b.ppl.toFixed(3)}`);
}
