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
import type { PreparedData } from './setup.ts';
import type { SearchSettings } from './settings.ts';

export async function runBaselines(
  runner: TaskRunner,
  store: RunStore,
  s: SearchSettings,
  data: PreparedData,
  tokenizerPath: string | undefined,
  log: (l: string) => void,
): Promise<void> {
  const have = new Set(store.baselines().map((b) => b.method));
  const todo = s.baselines.filter((m) => !have.has(m));
  if (todo.length === 0) return;
  log(`baselines on ${s.fitnessData}: ${todo.join(', ')}`);
  const record = (method: string, r: TaskOutcome<PplReply>, extraSeconds = 0): void => {
    const ok = r.status === 'ok' ? r.value : null;
    store.addBaseline({
      method,
      pattern: s.pattern,
      sparsity: s.sparsity,
      split: s.fitnessData,
      tokens: ok?.tokens ?? 0,
      ppl: ok?.ppl ?? null,
      seconds: r.seconds + extraSeconds,
      error: r.status === 'ok' ? null : `${r.status}: ${r.error}`,
    });
  };
  await Promise.all(
    todo
      .filter((m) => m !== 'sparsegpt')
      .map(async (m) => record(m, await runner.run<PplReply>({ kind: 'method', name: m, seed: s.seed, maxTokens: s.evalTokens, key: `method/${m}` } satisfies WorkerTask))),
  );
  if (todo.includes('sparsegpt')) {
    // SparseGPT reconstructs weights from input Hessians (one-shot, like every candidate here).
    const t0 = performance.now();
    const windows = data.windows.length
      ? data.windows
      : await loadCalibrationWindows({ data: s.calibData, nsamples: s.nsamples, seqlen: s.seqlen, tokenizerPath, vocabSize: modelVocabSize(data.model), seed: CALIBRATION_SEED });
    const m = cloneModel(data.model);
    await pruneModel(m, { method: baselineMethod('sparsegpt'), sparsity: s.sparsity, pattern: data.pattern, calibration: 'one-shot', windows, layers: data.layers, ...(data.blockSparsity.size ? { blockSparsity: data.blockSparsity } : {}) });
    const pruneSeconds = (performance.now() - t0) / 1000;
    if (runner.local) {
      const weights: Record<string, Float32Array> = {};
      for (const l of data.layers) weights[l.initializer] = tensorToFloat32(findInitializer(m, l.initializer)!);
      record('sparsegpt', await runner.run<PplReply>({ kind: 'weights', weights, maxTokens: s.evalTokens } satisfies WorkerTask), pruneSeconds);
    } else {
      // Whole weight sets do not travel through a queue: the coordinator measures this one itself.
      const t1 = performance.now();
      const ev = await PerplexityEvaluator.create(m, { threads: 1 });
      const r = await ev.evaluate(data.tokens, { seqlen: s.seqlen, maxTokens: s.evalTokens });
      record('sparsegpt', { status: 'ok', value: { ppl: r.ppl, nll: r.nll, tokens: r.tokens, worker: 0, seconds: 0 }, seconds: (performance.now() - t1) / 1000 }, pruneSeconds);
    }
  }
  for (const b of store.baselines()) if (todo.includes(b.method)) log(`  ${b.method}: ${b.ppl === null ? b.error : b.ppl.toFixed(3)}`);
}
