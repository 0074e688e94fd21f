/**
 * A search run end to end, as a library call: open or resume the run, prepare the model and
 * the one-shot statistics, start the task runner, evaluate the baselines once, then step
 * the GP engine, committing every individual and evaluation as it finishes and a
 * checkpoint of the engine after every step. A process killed at any point loses nothing
 * finished: resuming restores the last checkpoint and replays the interrupted step, whose
 * candidates (same ids, same trees) find their finished evaluations in the database.
 *
 * No process handling here: the caller passes an AbortSignal (stop after the current step)
 * and draws progress from the callback.
 */
import { createHash } from 'node:crypto';
import { existsSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { makeDirs } from '../files.ts';
import { acquireWriterLock, type WriterLock } from '../store/lock.ts';
import { InputError } from '../errors.ts';
import { CandidateEvaluator, type FitnessCounters } from '../eval/fitness.ts';
import type { TaskRunner } from '../eval/task-runner.ts';
import type { PplReply, WorkerTask } from '../eval/worker.ts';
import { openDatabase } from '../store/schema.ts';
import { listRuns, type RunStore } from '../store/store.ts';
import { baselines } from '../store/queries.ts';
import { WorkerLog } from '../store/workers.ts';
import { runBaselines } from './baselines.ts';
import { AllocationCandidates } from './evolve-allocation.ts';
import { evolve, type StepProgress } from './evolve.ts';
import { localRunner, streamedRunner, type Fault, type RunnerFactory } from './runners.ts';
import { planSearchMemory } from './memory.ts';
import { checkStreamedRun, prepareStreamedData } from './streamed-setup.ts';
import { defaultWorkers } from '../eval/pool.ts';
import { openRun, prepareData, versions, type DataHashes, type OpenedRun } from './setup.ts';
import { modelSha256 as modelHash, resolveModel } from '../model/load.ts';
import { FIELD_NAMES, SEARCH_DEFAULTS, checkSettings, shortTokens, type GpOptions, type SearchSettings, type Setting, type SettingNames } from './settings.ts';

/** The model files: an ONNX file, and the tokenizer for text data. */
export interface ModelFiles {
  modelPath: string;
  tokenizerPath?: string;
}

export interface SearchOptions {
  /** The run log (SQLite); created, or resumed with `resume`. */
  db: string;
  resume?: boolean;
  /** Required for a new run; on resume, absent means the run's own model. */
  model?: ModelFiles;
  /** Settings given; the rest come from the defaults (new run) or the stored run (resume, where any given must match). */
  settings?: RequestedSettings;
  /** Terminals, operators, depth and size limits, ... (stored with the run). */
  gp?: GpOptions;
  /** Where candidates are evaluated (default: the local pool with `workers` threads). */
  runner?: RunnerFactory;
  /** Memory budget in bytes (--max-memory): a model the local pool would not fit in is searched block by block (memory.ts). */
  maxMemory?: number;
  /** Threads of the default local pool (default: one per core). */
  workers?: number;
  /** Per-task time limit in seconds (default: 20x a dense evaluation at the full budget, at least 60 s). */
  taskTimeout?: number;
  /** Stop after the step in progress (status `interrupted`). */
  signal?: AbortSignal;
  /** Mark the run interrupted at once (the caller is about to exit). */
  stopNow?: AbortSignal;
  onProgress?: (p: SearchProgress) => void;
  /** Lines for the user. */
  log?: (line: string) => void;
  /** How errors name the settings (the CLI passes its flags). */
  names?: Partial<SettingNames>;
  /** Fault injection for tests, in the default local pool (see WorkerInit.fault). */
  fault?: Fault | null;
}

/** Settings a caller asks for; `settings: null` says "one setting" (a resumed run of several refuses it). */
export type RequestedSettings = Partial<Omit<SearchSettings, 'modelSha256' | 'gp' | 'settings'>> & { settings?: Setting[] | null };

export type SearchProgress = { kind: 'statistics'; stage: 'G' | 'X'; done: number; total: number } | StepProgress;

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
  /** As the fitness is measured: for a run of several settings, each method's geometric mean over them. */
  baselines: { method: string; ppl: number | null }[];
  /** The run's settings by name (`0.5:unstructured`, `2:4`); with two or more, perplexities are geometric means over them. */
  settings: string[];
  seconds: number;
}

/** The model a stored run was made with (for resuming without naming it). */
export function storedModel(db: string): ModelFiles | undefined {
  if (!existsSync(db)) return undefined;
  const peek = openDatabase(db, { readonly: true });
  try {
    const runs = listRuns(peek);
    if (!runs.length) return undefined;
    const modelPath = runs[runs.length - 1]!.modelPath;
    return { modelPath, tokenizerPath: resolveModel(modelPath).tokenizerPath };
  } finally {
    peek.close();
  }
}

export async function runSearch(o: SearchOptions): Promise<SearchSummary> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const names: SettingNames = { ...FIELD_NAMES, ...o.names };
  const resume = !!o.resume;
  if (o.workers !== undefined && !(Number.isInteger(o.workers) && o.workers >= 1)) throw new InputError(`${names.workers} ${o.workers}: must be a positive integer`);
  if (o.taskTimeout !== undefined && !(o.taskTimeout > 0)) throw new InputError(`${names.taskTimeout} ${o.taskTimeout}: must be a positive number of seconds`);
  if (resume && !existsSync(o.db)) throw new InputError(`${o.db}: no such database, so no run to resume; leave out ${names.resume} to start one`);
  const model = o.model ?? (resume ? storedModel(o.db) : undefined);
  if (!model) throw new InputError(resume ? `${o.db}: no run to resume; leave out ${names.resume} to start one` : 'a new search needs a model');
  // The local pool holds the model in every thread; a model that does not fit is searched block by block.
  const maxMemory = o.maxMemory ?? Infinity;
  const plan = await planSearchMemory(model.modelPath, { threads: o.runner ? o.runner.localThreads : (o.workers ?? defaultWorkers()), maxMemory, queue: !!o.runner, flags: names, log });
  const factory = o.runner ?? (plan.kind === 'memory' ? localRunner(plan.threads, o.fault ?? null) : streamedRunner());
  const modelSha256 = await modelHash(resolveModel(model.modelPath));
  const requested: Partial<Omit<SearchSettings, 'settings'>> & { settings?: Setting[] | null } = { ...o.settings, ...(o.gp ? { gp: o.gp } : {}), ...(!resume ? { modelSha256 } : {}) }; // a resumed run's model is compared below, whichever way it was named
  const full: SearchSettings | null = resume ? null : newSettings(requested, modelSha256, factory.parallelism);
  if (full) checkSettings(full, names); // the whole configuration, before the database is created
  if (full && plan.kind === 'streamed') await checkStreamedRun(model.modelPath, full, maxMemory, names);
  // One writer per database: the lock is held from before the run is looked up until the end.
  // Only the lock holder may remove a database it created (never another writer's).
  const madeDirs = makeDirs(dirname(resolve(o.db)));
  let lock: WriterLock;
  try {
    lock = acquireWriterLock(o.db);
  } catch (e) {
    removeMadeDirs(madeDirs);
    throw e;
  }
  const dbExisted = existsSync(o.db);
  let opened: OpenedRun;
  try {
    opened = openRun(o.db, requested, { resume, modelPath: model.modelPath, versions: versions(), names }, full);
  } catch (e) {
    removeNewDatabase(o.db, dbExisted);
    lock.release();
    removeMadeDirs(madeDirs);
    throw e;
  }
  const { settings } = opened;
  if (opened.resumed && settings.modelSha256 !== modelSha256) {
    opened.db.close();
    lock.release();
    throw new InputError(
      `${names.resume}: ${model.modelPath} is not the model run ${opened.store!.runId} was started with (sha256 ${modelSha256.slice(0, 12)}… now, ${String(settings.modelSha256).slice(0, 12)}… then); a run never mixes two models`,
    );
  }
  let store = opened.store as RunStore; // set below for a new run, before anything can use it
  if (opened.resumed) log(opened.finished ? `run ${store.runId} in ${o.db} is already finished` : `resuming run ${store.runId} from ${o.db}`);
  const markNow = (): void => store?.setStatus('interrupted');
  o.stopNow?.addEventListener('abort', markNow);
  let runner: TaskRunner | undefined;
  let removed = false;
  try {
    if (opened.finished) return summarize(store, o.db, 'finished', true, null, performance.now() - t0);
    const checkHashes = (h: DataHashes): void => {
      if (!opened.resumed) return;
      const stored = store.run.dataHashes;
      if (stored.fitness && stored.fitness !== h.fitness) throw new InputError(`${names.resume}: the fitness data ${settings.fitnessData} changed since run ${store.runId} started (token hash differs)`);
      if (stored.stats && stored.stats !== h.stats) throw new InputError(`${names.resume}: the statistics file ${settings.stats} changed since run ${store.runId} started (sha256 differs)`);
    };
    const paths = { modelPath: model.modelPath, tokenizerPath: model.tokenizerPath, dbPath: o.db };
    const prepare = { log, names, checkHashes, onProgress: (stage: 'G' | 'X', done: number, total: number) => o.onProgress?.({ kind: 'statistics', stage, done, total }) };
    if (opened.resumed && plan.kind === 'streamed') await checkStreamedRun(model.modelPath, settings, maxMemory, names);
    const data = plan.kind === 'streamed' ? await prepareStreamedData(settings, paths, prepare) : await prepareData(settings, paths, prepare);
    if (plan.kind === 'streamed') log(`searching block by block, one candidate at a time with one decoder block in memory: ${plan.why}`);
    const tokHash = data.hashes.fitness;
    if (!opened.resumed) store = opened.create({ ...data.hashes });
    store.setStatus('running');
    const secondsBefore = store.run.seconds;
    log(`${data.layers.length} prunable layers; statistics ${data.statsCached ? 'read from' : 'written to'} ${data.statsFile} (${data.statsSeconds.toFixed(1)} s)`);

    // A first dense evaluation per runner slot warms the workers up and sets the default time limit.
    const r = store.run;
    const runKey = createHash('sha256').update(`${r.created}/${r.id}/${r.configHash}/${r.modelSha256}`).digest('hex').slice(0, 16);
    const watch = new WorkerLog(store.db, store.runId);
    runner = await factory.start({ data, settings, modelSha256: settings.modelSha256, tokensSha256: tokHash, modelPath: model.modelPath, runKey, watch });
    const fullTokens = settings.evalTokens;
    const dense = await Promise.all(Array.from({ length: runner.parallelism }, () => runner!.run<PplReply>({ kind: 'dense', maxTokens: fullTokens } satisfies WorkerTask)));
    const d0 = dense[0]!;
    if (d0.status !== 'ok') throw new Error(`dense evaluation failed: ${d0.error}`);
    const timeoutS = o.taskTimeout ?? Math.max(60, 20 * Math.max(...dense.map((d) => d.seconds)));
    runner.setTaskTimeout(timeoutS * 1000);
    if (!store.baselines().some((b) => b.method === 'dense'))
      store.addBaseline({ method: 'dense', pattern: settings.pattern, sparsity: 0, split: settings.fitnessData, tokens: d0.value.tokens, ppl: d0.value.ppl, seconds: d0.seconds });
    log(`dense perplexity on ${settings.fitnessData}: ${d0.value.ppl.toFixed(3)} over ${d0.value.tokens} tokens (${d0.seconds.toFixed(2)} s per evaluation); time limit per task ${timeoutS.toFixed(0)} s`);

    await runBaselines(runner, store, settings, data, model.tokenizerPath, log, model.modelPath);
    // An allocation search: candidates are allocation expressions, pruning with the run's fixed metric.
    const allocation = settings.evolveAllocation ? new AllocationCandidates(settings.evolveAllocation, settings.sparsity, data) : null;
    await allocation?.baselines(runner, store, settings, log);

    const evaluator = new CandidateEvaluator(allocation ? allocation.runner(runner) : runner, store, { shortTokens: shortTokens(settings), fullTokens, margin: settings.margin });
    const status = await evolve(store, settings, evaluator, { signal: o.signal, onStep: o.onProgress, secondsBefore, t0 });
    if (status === 'finished') log(`search done: ${store.latestCheckpoint()?.step ?? 0} steps`);
    store.setSeconds(secondsBefore + (performance.now() - t0) / 1000);
    store.setStatus(status);
    return summarize(store, o.db, status, opened.resumed, evaluator.counters, performance.now() - t0);
  } catch (e) {
    if (store) store.setStatus(e instanceof InputError ? 'interrupted' : 'failed', (e as Error).message ?? String(e));
    else {
      opened.db.close();
      removeNewDatabase(o.db, dbExisted); // no run was created: leave nothing behind
      removed = true;
    }
    throw e;
  } finally {
    o.stopNow?.removeEventListener('abort', markNow);
    if (runner) await runner.close();
    if (opened.db.open) opened.db.close();
    lock.release();
    if (removed) removeMadeDirs(madeDirs);
  }
}

/** Remove a database this call created (with its WAL files) when no run went into it. Called by the lock holder only, before it lets go. */
function removeNewDatabase(db: string, existed: boolean): void {
  if (!existed) for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${db}${suffix}`, { force: true });
}

/** Remove the folders made for a database, innermost first, while they are empty (after the lock file went with the lock). */
function removeMadeDirs(madeDirs: string[]): void {
  for (const d of [...madeDirs].reverse()) {
    try {
      rmdirSync(d);
    } catch {
      break; // not empty: something else lives there now
    }
  }
}

function newSettings(req: Partial<Omit<SearchSettings, 'settings'>> & { settings?: Setting[] | null }, modelSha256: string, parallelism: number): SearchSettings {
  const d = SEARCH_DEFAULTS;
  const generations = req.generations ?? null;
  const mode = req.mode ?? (generations !== null ? 'generational' : d.mode);
  return {
    modelSha256,
    sparsity: req.sparsity ?? d.sparsity,
    pattern: req.pattern ?? d.pattern,
    ...(req.settings && req.settings.length > 1 ? { settings: req.settings } : {}),
    mode,
    population: req.population ?? d.population,
    batch: req.batch ?? 2 * parallelism,
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
    ...(req.gp || req.evolveAllocation ? { gp: { ...req.gp, ...(req.evolveAllocation ? { language: 'allocation' as const } : {}) } } : {}),
    ...(req.evolveAllocation ? { evolveAllocation: req.evolveAllocation } : {}),
    ...(req.allocation && req.allocation.kind !== 'uniform' ? { allocation: req.allocation } : {}),
  };
}

function summarize(store: RunStore, db: string, status: 'finished' | 'interrupted', resumed: boolean, counters: FitnessCounters | null, ms: number): SearchSummary {
  const best = store.best();
  const byStatus = store.evaluationCounts();
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
      maskDuplicates: store.maskDuplicateCount(),
      failed: n((r) => r.status === 'error' || r.status === 'timeout' || r.status === 'crash'),
    },
    session: counters ?? { masks: 0, short: 0, full: 0, failed: 0, maskDuplicates: 0, replayed: 0, settingReuses: 0 },
    baselines: baselines(store.db, store.runId).map((b) => ({ method: b.method, ppl: b.ppl })),
    settings: store.settings,
    seconds: ms / 1000,
  };
}
