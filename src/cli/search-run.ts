/**
 * A search run end to end: open or resume the run, prepare the model and the one-shot
 * statistics, start the workers, evaluate the baselines once, then step the GP engine,
 * committing every individual and evaluation as it finishes and a checkpoint of the
 * engine after every step. `kill -9` at any point loses nothing finished: `--resume`
 * restores the last checkpoint and replays the interrupted step, whose candidates (same
 * ids, same trees) find their finished evaluations in the database.
 */
import { existsSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { cloneModel, findInitializer } from '../onnx/graph-edit.ts';
import { tensorToFloat32 } from '../onnx/tensor.ts';
import { GpEngine, type GpDeps, type IndividualRecord, type StepSummary } from '../gp/index.ts';
import { baselineMethod } from '../prune/baselines.ts';
import { CALIBRATION_SEED, loadCalibrationWindows, modelVocabSize } from '../prune/calibration-windows.ts';
import { pruneModel } from '../prune/prune-model.ts';
import { EvalPool, defaultWorkers } from '../eval/pool.ts';
import { CandidateEvaluator, type FitnessCounters } from '../eval/fitness.ts';
import type { PplReply, WorkerInit, WorkerTask } from '../eval/worker.ts';
import { openDatabase } from '../store/schema.ts';
import { listRuns, type RunStore } from '../store/store.ts';
import { resolveModel } from './model-path.ts';
import { progress, fmtSecs } from './progress.ts';
import { fileSha256, openRun, prepareData, tokensSha256, versions, type PreparedData } from './search-setup.ts';
import { SEARCH_DEFAULTS, shortTokens, type SearchSettings } from './search-settings.ts';

export interface SearchOptions {
  db: string;
  resume: boolean;
  /** --model as given (undefined: the bundled model, or the run's model on --resume). */
  model?: string;
  /** Settings given on the command line; the rest come from defaults (new run) or the stored run (resume). */
  requested: Partial<Omit<SearchSettings, 'modelSha256'>>;
  workers?: number;
  /** Per-task time limit in seconds (default: 20x a dense evaluation at the full budget, at least 60 s). */
  taskTimeout?: number;
  /** Lines for the user (stderr). */
  log?: (line: string) => void;
  /** Redraw a progress line (TTY only). */
  showProgress?: boolean;
  /** Fault injection for tests (see WorkerInit.fault), from SYMPRUNE_WORKER_FAULT=crash@N|hang@N|slow@N. */
  fault?: { at: number; kind: 'crash' | 'hang' | 'slow' } | null;
}

export interface SearchSummary {
  run: number;
  db: string;
  status: 'finished' | 'interrupted';
  resumed: boolean;
  best: { id: number; infix: string; ppl: number; fidelity: string | null } | null;
  individuals: number;
  evaluations: { short: number; full: number; reused: number; maskDuplicates: number; failed: number };
  /** Perplexity evaluations this session paid, and those it found done (replay). */
  session: FitnessCounters;
  baselines: { method: string; ppl: number | null }[];
  seconds: number;
}

class Interrupted extends Error {}

/** Parse SYMPRUNE_WORKER_FAULT (testing hook): `crash@N`, `hang@N` or `slow@N`, N = the N-th perplexity task. */
export function faultFromEnv(v = process.env.SYMPRUNE_WORKER_FAULT): SearchOptions['fault'] {
  if (!v) return null;
  const m = /^(crash|hang|slow)@(\d+)$/.exec(v);
  if (!m) throw new InputError(`SYMPRUNE_WORKER_FAULT=${v}: expected crash@N, hang@N or slow@N`);
  return { kind: m[1] as 'crash' | 'hang' | 'slow', at: Number(m[2]) };
}

export async function runSearch(o: SearchOptions): Promise<SearchSummary> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const workers = o.workers ?? defaultWorkers();
  if (!Number.isInteger(workers) || workers < 1) throw new InputError(`--workers ${workers}: must be a positive integer`);
  if (o.taskTimeout !== undefined && !(o.taskTimeout > 0)) throw new InputError(`--task-timeout ${o.taskTimeout}: must be a positive number of seconds`);

  if (o.resume && !existsSync(o.db)) throw new InputError(`${o.db}: no such database, so no run to resume; leave out --resume to start one`);
  // Which model: the flag, else (resume) the run's, else the bundled one.
  let modelArg = o.model;
  if (o.resume && modelArg === undefined && existsSync(o.db)) {
    const peek = openDatabase(o.db, { readonly: true });
    try {
      const runs = listRuns(peek);
      if (runs.length) modelArg = runs[runs.length - 1]!.modelPath;
    } finally {
      peek.close();
    }
  }
  const resolved = resolveModel(modelArg);
  const modelSha256 = await fileSha256(resolved.modelPath);
  const requested: Partial<SearchSettings> = { ...o.requested, ...(o.model !== undefined || !o.resume ? { modelSha256 } : {}) };
  const full: SearchSettings | null = o.resume ? null : newSettings(requested, modelSha256, workers);
  const opened = openRun(o.db, requested, { resume: o.resume, modelPath: resolved.modelPath, versions: versions() }, full);
  const { settings } = opened;
  let store = opened.store as RunStore; // set below for a new run, before anything can use it
  if (opened.resumed) {
    if (opened.finished) log(`run ${store.runId} in ${o.db} is already finished`);
    else log(`resuming run ${store.runId} from ${o.db}`);
  }
  let pool: EvalPool | undefined;
  const onSignal = (): void => {
    stop.requested = true;
    log('stopping after the current step (interrupt again to stop at once)');
    process.once('SIGINT', () => {
      if (store) store.setStatus('interrupted');
      process.exit(130);
    });
  };
  const stop = { requested: false };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (opened.finished) return summarize(store, o.db, 'finished', true, null, performance.now() - t0);
    const fault = o.fault ? { ...o.fault, counter: new Int32Array(new SharedArrayBuffer(4)) } : null;
    const bars: Partial<Record<'G' | 'X', ReturnType<typeof progress>>> = {};
    const data = await prepareData(
      settings,
      { modelPath: resolved.modelPath, tokenizerPath: resolved.tokenizerPath, dbPath: o.db },
      {
        log,
        fault,
        onProgress: o.showProgress
          ? (stage, done, total) => {
              const bar = (bars[stage] ??= progress(stage === 'G' ? 'gradient statistics G' : 'activation statistics X', total));
              bar.update(done);
              if (done >= total) bar.done();
            }
          : undefined,
      },
    );
    const tokHash = tokensSha256(data.tokens);
    if (opened.resumed) {
      const stored = store.run.dataHashes;
      if (stored.fitness && stored.fitness !== tokHash) throw new InputError(`--resume: the fitness data ${settings.fitnessData} changed since run ${store.runId} started (token hash differs)`);
    } else {
      store = opened.create({ fitness: tokHash });
    }
    store.setStatus('running');
    const secondsBefore = store.run.seconds;
    log(`${data.layers.length} prunable layers; statistics ${data.statsCached ? 'read from' : 'written to'} ${data.statsFile} (${data.statsSeconds.toFixed(1)} s)`);

    // Workers; a first dense evaluation warms them up and sets the default time limit.
    pool = new EvalPool({ filename: new URL('../eval/worker-entry.mjs', import.meta.url), workerData: data.workerInit, threads: workers, taskTimeoutMs: 0 });
    const fullTokens = settings.evalTokens;
    const dense = await Promise.all(Array.from({ length: workers }, () => pool!.run<PplReply>({ kind: 'dense', maxTokens: fullTokens } satisfies WorkerTask)));
    const d0 = dense[0]!;
    if (d0.status !== 'ok') throw new Error(`dense evaluation failed: ${d0.error}`);
    const timeoutS = o.taskTimeout ?? Math.max(60, 20 * Math.max(...dense.map((d) => d.seconds)));
    pool.setTaskTimeout(timeoutS * 1000);
    if (!store.baselines().some((b) => b.method === 'dense'))
      store.addBaseline({ method: 'dense', pattern: settings.pattern, sparsity: 0, split: settings.fitnessData, tokens: d0.value.tokens, ppl: d0.value.ppl, seconds: d0.seconds });
    log(`dense perplexity on ${settings.fitnessData}: ${d0.value.ppl.toFixed(3)} over ${d0.value.tokens} tokens (${d0.seconds.toFixed(2)} s per evaluation); time limit per task ${timeoutS.toFixed(0)} s`);

    await runBaselines(pool, store, settings, data, resolved.tokenizerPath, log);

    const evaluator = new CandidateEvaluator(pool, store, { shortTokens: shortTokens(settings), fullTokens, margin: settings.margin });
    const status = await evolve(store, settings, evaluator, { log, showProgress: !!o.showProgress, stop, secondsBefore, t0 });
    store.setSeconds(secondsBefore + (performance.now() - t0) / 1000);
    store.setStatus(status);
    return summarize(store, o.db, status, opened.resumed, evaluator.counters, performance.now() - t0);
  } catch (e) {
    if (e instanceof Interrupted && store) {
      store.setStatus('interrupted');
      return summarize(store, o.db, 'interrupted', opened.resumed, null, performance.now() - t0);
    }
    if (store) store.setStatus(e instanceof InputError ? 'interrupted' : 'failed', (e as Error).message ?? String(e));
    throw e;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (pool) await pool.close();
    opened.db.close();
  }
}

function newSettings(req: Partial<SearchSettings>, modelSha256: string, workers: number): SearchSettings {
  const d = SEARCH_DEFAULTS;
  const generations = req.generations ?? null;
  const mode = req.mode ?? (generations !== null ? 'generational' : d.mode);
  return {
    modelSha256,
    sparsity: req.sparsity ?? d.sparsity,
    pattern: req.pattern ?? d.pattern,
    mode,
    population: req.population ?? d.population,
    batch: req.batch ?? 2 * workers,
    iterations: req.iterations ?? (mode === 'generational' ? null : d.iterations),
    generations: mode === 'generational' ? (generations ?? 10) : generations,
    seed: req.seed ?? d.seed,
    fitnessData: req.fitnessData ?? d.fitnessData,
    evalTokens: req.evalTokens ?? d.evalTokens,
    shortFraction: req.shortFraction ?? d.shortFraction,
    margin: req.margin ?? d.margin,
    seqlen: req.seqlen ?? d.seqlen,
    calibData: req.calibData ?? d.calibData,
    nsamples: req.nsamples ?? d.nsamples,
    stats: req.stats ?? d.stats,
    seedKnown: req.seedKnown ?? d.seedKnown,
    baselines: req.baselines ?? d.baselines,
  };
}

/**
 * Perplexity of each baseline on the fitness data at the full budget, in the same harness
 * as the candidates (one-shot dense statistics), once per run.
 */
async function runBaselines(pool: EvalPool, store: RunStore, s: SearchSettings, data: PreparedData, tokenizerPath: string | undefined, log: (l: string) => void): Promise<void> {
  const have = new Set(store.baselines().map((b) => b.method));
  const todo = s.baselines.filter((m) => !have.has(m));
  if (todo.length === 0) return;
  log(`baselines on ${s.fitnessData}: ${todo.join(', ')}`);
  const record = (method: string, r: Awaited<ReturnType<EvalPool['run']>>, extraSeconds = 0): void => {
    const ok = r.status === 'ok' ? (r.value as PplReply) : null;
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
      .map(async (m) => record(m, await pool.run<PplReply>({ kind: 'method', name: m, seed: s.seed, maxTokens: s.evalTokens } satisfies WorkerTask))),
  );
  if (todo.includes('sparsegpt')) {
    // SparseGPT reconstructs weights from input Hessians (one-shot, like every candidate here).
    const t0 = performance.now();
    const windows = data.windows.length
      ? data.windows
      : await loadCalibrationWindows({ data: s.calibData, nsamples: s.nsamples, seqlen: s.seqlen, tokenizerPath, vocabSize: modelVocabSize(data.model), seed: CALIBRATION_SEED });
    const m = cloneModel(data.model);
    await pruneModel(m, { method: baselineMethod('sparsegpt'), sparsity: s.sparsity, pattern: data.pattern, calibration: 'one-shot', windows, layers: data.layers });
    const weights: Record<string, Float32Array> = {};
    for (const l of data.layers) weights[l.initializer] = tensorToFloat32(findInitializer(m, l.initializer)!);
    const pruneSeconds = (performance.now() - t0) / 1000;
    record('sparsegpt', await pool.run<PplReply>({ kind: 'weights', weights, maxTokens: s.evalTokens } satisfies WorkerTask), pruneSeconds);
  }
  for (const b of store.baselines()) if (todo.includes(b.method)) log(`  ${b.method}: ${b.ppl === null ? b.error : b.ppl.toFixed(3)}`);
}

interface EvolveOptions {
  log: (l: string) => void;
  showProgress: boolean;
  stop: { requested: boolean };
  /** Run time of earlier sessions. */
  secondsBefore: number;
  t0: number;
}

/** Step the engine to the end of the budget, checkpointing after every step. */
async function evolve(store: RunStore, s: SearchSettings, ev: CandidateEvaluator, o: EvolveOptions): Promise<'finished' | 'interrupted'> {
  let engine: GpEngine;
  const deps: GpDeps = {
    evaluate: async (batch) => (await ev.evaluate(batch, engine.state.step + 1)).map((r) => (r.invalid ? { fitness: r.fitness, invalid: r.invalid } : r.fitness)),
    fingerprint: (tree, meta) => ev.fingerprint(tree, meta, engine.state.step + 1),
    // The engine's record carries every field the store needs (and some it ignores).
    onIndividual: (r: IndividualRecord) => ev.record(r),
  };
  const ckpt = store.latestCheckpoint<string>();
  engine = ckpt
    ? GpEngine.restore(ckpt.state, deps)
    : GpEngine.create({ seed: String(s.seed), mode: s.mode, populationSize: s.population, batchSize: s.batch, seedKnown: s.seedKnown }, deps);
  const until = s.mode === 'generational' ? { generations: s.generations! } : { iterations: Math.ceil(s.iterations! / s.batch) };
  const totalSteps = s.mode === 'generational' ? Math.ceil((s.population / s.batch) * (1 + s.generations!)) : Math.ceil(s.population / s.batch) + until.iterations!;
  const firstStep = engine.state.step;
  const bar = o.showProgress ? progress('search step', totalSteps - firstStep) : null;
  const t0 = performance.now();
  const afterStep = (sum: StepSummary, e: GpEngine): void => {
    const pop = e.state.population.map((p) => p.fitness).sort((a, b) => a - b);
    const median = pop.length ? (pop.length % 2 ? pop[(pop.length - 1) / 2]! : (pop[pop.length / 2 - 1]! + pop[pop.length / 2]!) / 2) : null;
    const paid = store.paidEvaluations();
    const elapsed = o.secondsBefore + (performance.now() - o.t0) / 1000;
    store.tx(() => {
      store.saveCheckpoint(sum.step, e.serialize());
      store.addProgress({ step: sum.step, evaluations: paid.short + paid.full, individuals: store.individualCount(), best: sum.best?.fitness ?? null, median, elapsed });
      store.setSeconds(elapsed);
    });
    const perMin = (ev.counters.short / Math.max((performance.now() - t0) / 60000, 1e-9)).toFixed(1);
    bar?.update(sum.step - firstStep, `| best ${sum.best ? sum.best.fitness.toFixed(3) : '-'} | ${paid.short} candidates evaluated (${perMin}/min), ${paid.full} at full budget, ${ev.counters.maskDuplicates} equal masks skipped`);
    if (o.stop.requested) throw new Interrupted();
  };
  try {
    await engine.run(until, afterStep);
  } catch (e) {
    bar?.done();
    if (e instanceof Interrupted) return 'interrupted';
    throw e;
  }
  bar?.done();
  o.log(`search done: ${engine.state.step} steps in ${fmtSecs((performance.now() - o.t0) / 1000)}`);
  return 'finished';
}

function summarize(store: RunStore, db: string, status: 'finished' | 'interrupted', resumed: boolean, counters: FitnessCounters | null, ms: number): SearchSummary {
  const q = store.db;
  const best = q
    .prepare(`SELECT id, infix, fitness, fidelity FROM individuals WHERE run = ? AND fitness IS NOT NULL AND fitness < 1e308 ORDER BY fitness, id LIMIT 1`)
    .get(store.runId) as { id: number; infix: string; fitness: number; fidelity: string | null } | undefined;
  const byStatus = q.prepare(`SELECT status, fidelity, COUNT(*) n FROM evaluations WHERE run = ? GROUP BY status, fidelity`).all(store.runId) as { status: string; fidelity: string; n: number }[];
  const n = (f: (r: { status: string; fidelity: string }) => boolean): number => byStatus.filter(f).reduce((a, r) => a + r.n, 0);
  return {
    run: store.runId,
    db,
    status,
    resumed,
    best: best ? { id: best.id, infix: best.infix, ppl: best.fitness, fidelity: best.fidelity } : null,
    individuals: store.individualCount(),
    evaluations: {
      short: n((r) => r.status === 'ok' && r.fidelity === 'short'),
      full: n((r) => r.status === 'ok' && r.fidelity === 'full'),
      reused: n((r) => r.status === 'reused' && r.fidelity === 'short'),
      maskDuplicates: q.prepare(`SELECT COUNT(*) FROM mask_duplicates WHERE run = ?`).pluck().get(store.runId) as number,
      failed: n((r) => r.status === 'error' || r.status === 'timeout' || r.status === 'crash'),
    },
    session: counters ?? { masks: 0, short: 0, full: 0, failed: 0, maskDuplicates: 0, replayed: 0 },
    baselines: store.baselines().map((b) => ({ method: b.method, ppl: b.ppl })),
    seconds: ms / 1000,
  };
}

export type { WorkerInit };
