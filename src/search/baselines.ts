/**
 * Perplexity of each baseline on the fitness data at the full budget, in the same harness
 * as the candidates (one-shot dense statistics), once per run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InputError } from '../errors.ts';
import { resolveModel } from '../model/load.ts';
import { openModelSource } from '../model/source.ts';
import { pruneModelSource } from '../prune/prune-file.ts';
import { streamedPerplexity } from '../eval/perplexity-stream.ts';
import { STREAMED_BATCH } from './streamed-setup.ts';
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
  /** The model file (read again block by block for SparseGPT when the run is searched block by block). */
  modelPath?: string,
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
      if (data.streamed) {
        const r = await streamedSparseGpt(modelPath!, data, x, windows, s);
        record('sparsegpt', x, r.outcome, r.pruneSeconds);
        continue;
      }
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

/**
 * SparseGPT on a model searched block by block: pruned from the model file block by block
 * into a scratch ONNX file (one-shot, as the candidates), evaluated block by block on the
 * fitness tokens, removed.
 */
async function streamedSparseGpt(modelPath: string, data: PreparedData, x: PreparedSetting, windows: Int32Array[], s: SearchSettings): Promise<{ outcome: TaskOutcome<PplReply>; pruneSeconds: number }> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-search-sparsegpt-'));
  const source = await openModelSource(resolveModel(modelPath));
  const t0 = performance.now();
  try {
    const file = path.join(scratch, 'model.onnx');
    // A budget of 0 keeps pruneModelSource block by block, writing the pruned blocks to `file`.
    await pruneModelSource(source, file, { method: baselineMethod('sparsegpt'), sparsity: x.sparsity, pattern: x.patternSpec, calibration: 'one-shot', windows, layers: data.layers, maxMemory: 0 });
    const pruneSeconds = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const pruned = await openModelSource(resolveModel(file));
    try {
      const r = await streamedPerplexity(pruned, data.tokens, { seqlen: s.seqlen, maxTokens: s.evalTokens, batchSize: STREAMED_BATCH });
      return { outcome: { status: 'ok', value: { ppl: r.ppl, nll: r.nll, tokens: r.tokens, worker: 0, seconds: r.seconds }, seconds: (performance.now() - t1) / 1000 }, pruneSeconds };
    } finally {
      await pruned.close();
    }
  } catch (e) {
    if (e instanceof InputError) throw e;
    return { outcome: { status: 'error', error: ((e as Error).message ?? String(e)).split('\n')[0]!, seconds: 0 }, pruneSeconds: (performance.now() - t0) / 1000 };
  } finally {
    await source.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
