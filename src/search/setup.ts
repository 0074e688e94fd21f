/**
 * Everything a search needs before its first candidate: the database and the run (new or
 * resumed, with the configuration checks), the model and its prunable layers, the
 * one-shot dense statistics X and G (cached beside the database), the fitness tokens,
 * and the shared memory handed to the workers.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { InputError } from '../errors.ts';
import type { ModelProto } from '../onnx/proto.ts';
import { loadModelGraph, resolveModel } from '../model/load.ts';
import { graphMaxPositions } from '../onnx/max-positions.ts';
import { readLayerWeight, type PrunableLayer } from '../prune/discover.ts';
import { denseGradients, denseX, prunableLayers } from '../prune/prune-model.ts';
import { CALIBRATION_SEED, loadCalibrationWindows, modelVocabSize } from '../prune/calibration-windows.ts';
import { SafetensorsFile, writeStatsFile } from '../prune/stats-file.ts';
import { parsePattern, type Pattern } from '../prune/score.ts';
import { layerAllocation, layerSparsities } from '../prune/allocation.ts';
import { loadTokens } from '../data/dataset.ts';
import { openDatabase, type DB } from '../store/schema.ts';
import { configHash, listRuns, RunStore, stableJson, type RunRow } from '../store/store.ts';
import type { WorkerInit } from '../eval/worker.ts';
import { fileSha256, readStats, tokensSha256, workerInit, type SettingSpec } from '../eval/job.ts';
import { checkSettings, FIELD_NAMES, runSettings, settingDiffs, settingLabel, type SearchSettings, type Setting, type SettingNames } from './settings.ts';

export { tokensSha256 };

export interface OpenedRun {
  db: DB;
  /** The run's writer; null for a new run until `create` is called (once its data is ready). */
  store: RunStore | null;
  create: (dataHashes: Record<string, string>) => RunStore;
  settings: SearchSettings;
  resumed: boolean;
  /** The run was already finished: nothing left to do. */
  finished: boolean;
}

/**
 * Open the database and find the run to resume, or check that a new one can start. Without
 * --resume the database must not hold a run yet (a new run is created by `create` once its
 * model and data have loaded, so bad input leaves no run behind); with it, the run's stored
 * settings are used, and any setting given on the command line must equal the stored one.
 */
export function openRun(
  dbPath: string,
  requested: Partial<Record<keyof SearchSettings, unknown>>,
  info: { resume: boolean; modelPath: string; versions: Record<string, string>; names?: SettingNames },
  full: SearchSettings | null,
): OpenedRun {
  const n = info.names ?? FIELD_NAMES;
  const db = openDatabase(dbPath);
  try {
    const runs = listRuns(db);
    if (!info.resume) {
      if (runs.length > 0) {
        const r = runs[runs.length - 1]!;
        const diffs = full ? settingDiffs(r.config, full, n) : [];
        if (diffs.length > 0)
          throw new InputError(`${dbPath} holds run ${r.id} with a different configuration (${diffs.join(', ')}); pass ${n.resume} to continue that run or use another ${n.db}`);
        throw new InputError(`${dbPath} already holds run ${r.id} with this configuration (${r.status}); pass ${n.resume} to continue it or use another ${n.db}`);
      }
      if (!full) throw new Error('openRun: settings missing for a new run');
      checkSettings(full, n);
      const create = (dataHashes: Record<string, string>): RunStore =>
        RunStore.create(db, { config: full as unknown as Record<string, unknown>, seed: full.seed, modelPath: info.modelPath, modelSha256: full.modelSha256, dataHashes, versions: info.versions });
      return { db, store: null, create, settings: full, resumed: false, finished: false };
    }
    if (runs.length === 0) throw new InputError(`${dbPath}: no run to resume; leave out ${n.resume} to start one`);
    const r: RunRow = runs[runs.length - 1]!;
    const diffs = settingDiffs(r.config, requested, n);
    if (diffs.length > 0) throw new InputError(`${n.resume}: ${diffs.join(', ')}; a resumed run keeps its configuration (leave the setting out, or use another ${n.db} for a new run)`);
    const settings = r.config as unknown as SearchSettings;
    if (configHash(r.config) !== r.configHash) throw new InputError(`${dbPath}: run ${r.id}'s configuration does not match its hash; the file was edited`);
    const store = RunStore.open(db, r.id);
    const create = (): RunStore => {
      throw new Error('openRun: the run exists already');
    };
    return { db, store, create, settings, resumed: true, finished: r.status === 'finished' };
  } catch (e) {
    db.close();
    throw e;
  }
}

export function versions(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const pkg = (name: string): string => {
    try {
      return (require(`${name}/package.json`) as { version: string }).version;
    } catch {
      return 'unknown';
    }
  };
  const own = require('../../package.json') as { version: string };
  return { symprune: own.version, onnxruntime: pkg('onnxruntime-node'), node: process.version };
}

export interface PreparedData {
  model: ModelProto;
  layers: PrunableLayer[];
  pattern: Pattern;
  tokens: Int32Array;
  windows: Int32Array[];
  /** The local threads' shared data; null when the model is searched block by block. */
  workerInit: WorkerInit | null;
  /** Searched block by block (over the memory budget): `model` is the graph, its weights stay on disk. */
  streamed: boolean;
  /** Sparsity per decoder block under the run's allocation (uniform: empty), at the first setting. */
  blockSparsity: Map<number, number>;
  /** Every setting of the run, in order, with its allocation. */
  settings: PreparedSetting[];
  statsFile: string;
  statsCached: boolean;
  statsSeconds: number;
  hashes: DataHashes;
}

/** A setting of the run, ready for masking: its name, its pattern parsed, its layer-wise allocation. */
export interface PreparedSetting extends Setting {
  label: string;
  patternSpec: Pattern;
  /** Sparsity per decoder block (uniform: empty). */
  blockSparsity: Map<number, number>;
  /** Sparsity per prunable layer (uniform: absent). */
  layerSparsity?: number[];
}

/** What preparing a run is told: the files, and how to report. */
export interface PrepareOptions {
  threads?: number;
  batchSize?: number;
  log?: (msg: string) => void;
  onProgress?: (stage: 'G' | 'X', done: number, total: number) => void;
  names?: SettingNames;
  /** Called with the fitness tokens' and the user's statistics file's sha256 before any statistics are computed (a resumed run refuses changed data here). */
  checkHashes?: (hashes: DataHashes) => void;
}

export type PreparePaths = { modelPath: string; tokenizerPath?: string; dbPath: string };

/**
 * The checks of a run's settings against its model (positions, N:M widths), its prunable
 * layers and its fitness tokens with their hashes (checked by `checkHashes`).
 */
export async function runInputs(model: ModelProto, s: SearchSettings, paths: PreparePaths, opts: PrepareOptions): Promise<{ layers: PrunableLayer[]; pattern: Pattern; vocabSize: number | undefined; tokens: Int32Array; hashes: DataHashes }> {
  const maxPositions = graphMaxPositions(model);
  if (maxPositions !== undefined && s.seqlen > maxPositions) throw new InputError(`${(opts.names ?? FIELD_NAMES).seqlen} ${s.seqlen}: the model has ${maxPositions} positions; use at most ${maxPositions}`);
  const layers = prunableLayers(model);
  const pattern = parsePattern(s.pattern, s.sparsity);
  for (const x of runSettings(s)) {
    const p = parsePattern(x.pattern, x.sparsity);
    if (p.kind !== 'nm') continue;
    const bad = layers.find((l) => l.in % p.m !== 0);
    if (bad) throw new InputError(`${(opts.names ?? FIELD_NAMES)[s.settings ? 'settings' : 'pattern']} ${x.pattern}: layer ${bad.name} has ${bad.in} inputs, not a multiple of ${p.m}`);
  }
  const vocabSize = modelVocabSize(model);
  const tokens = await loadTokens(s.fitnessData, { tokenizerPath: paths.tokenizerPath, vocabSize });
  if (tokens.length < s.seqlen + 1) throw new InputError(`${(opts.names ?? FIELD_NAMES).fitnessData} ${s.fitnessData}: ${tokens.length} tokens, fewer than one window of ${s.seqlen + 1}`);
  const hashes: DataHashes = { fitness: tokensSha256(tokens), ...(s.stats ? { stats: await statsFileSha256(s.stats, (opts.names ?? FIELD_NAMES).stats) } : {}) };
  opts.checkHashes?.(hashes);
  return { layers, pattern, vocabSize, tokens, hashes };
}

/**
 * The run's statistics cache beside the database and what it must have been made for.
 * `G` says where G came from, so a cache completed from a user's file never passes for computed statistics.
 */
export function statsCache(s: SearchSettings, dbPath: string, g: string = s.stats ?? 'computed'): { file: string; meta: Record<string, string> } {
  const file = join(dirname(resolve(dbPath)), `${basename(dbPath).replace(/\.[^.]*$/, '')}.stats.safetensors`);
  return { file, meta: { model: s.modelSha256, data: s.calibData, nsamples: String(s.nsamples), seqlen: String(s.seqlen), seed: String(CALIBRATION_SEED), mode: 'one-shot', G: g } };
}

/**
 * Load the model, compute or reuse the dense statistics, and build the workers' shared data.
 * The statistics are one-shot (dense model) and cached as `<db>.stats.safetensors` beside
 * the database, keyed by the model hash and the calibration settings: a resumed run
 * reads them back instead of recomputing them.
 */
export async function prepareData(s: SearchSettings, paths: PreparePaths, opts: PrepareOptions): Promise<PreparedData> {
  const log = opts.log ?? (() => {});
  const model = await loadModelGraph(resolveModel(paths.modelPath));
  const { layers, pattern, vocabSize, tokens, hashes } = await runInputs(model, s, paths, opts);
  const { file: cacheFile, meta } = statsCache(s, paths.dbPath);
  const t0 = performance.now();
  // A user's --stats file is read as it is; otherwise a cache made for this model and these
  // calibration settings is reused, and anything else is recomputed.
  const userStats = s.stats ?? null; // runs stored before --stats existed have no such key
  const source = userStats ?? (cachedStatsMatch(cacheFile, meta) ? cacheFile : null);
  const { G, X } = source ? readStats(source, layers, { G: userStats !== null, X: false }) : { G: new Map<string, Float32Array>(), X: new Map<string, Float32Array>() };
  const cached = source !== null && G.size === layers.length && X.size === layers.length;
  let windows: Int32Array[] = [];
  if (!cached) {
    windows = await loadCalibrationWindows({ data: s.calibData, nsamples: s.nsamples, seqlen: s.seqlen, tokenizerPath: paths.tokenizerPath, vocabSize, seed: CALIBRATION_SEED });
    if (G.size < layers.length) {
      log(`dense statistics: G of ${layers.length} layers over ${windows.length} x ${s.seqlen} tokens of ${s.calibData}`);
      for (const [k, v] of await denseGradients(model, layers, windows, { threads: opts.threads, onBatch: (d, t) => opts.onProgress?.('G', d, t) })) G.set(k, v);
    }
    log(`dense statistics: X of ${layers.length} layers over ${windows.length} x ${s.seqlen} tokens of ${s.calibData}`);
    for (const [k, v] of await denseX(model, layers, windows, { threads: opts.threads, onBatch: (d, t) => opts.onProgress?.('X', d, t) })) X.set(k, v);
    // The complete statistics go to the cache, which workers elsewhere read (a user's file may lack X).
    writeStatsFile(cacheFile, layers, (l) => ({ G: G.get(l.name) ?? null, X: X.get(l.name) ?? null }), meta);
  }
  const statsFile = cached ? source! : cacheFile;
  const statsSeconds = (performance.now() - t0) / 1000;

  // The allocation (OWL's or an expression's) from the dense weights and X, once per setting; every candidate and baseline is masked with it.
  const settings = runSettings(s).map((x): PreparedSetting => {
    const blockSparsity =
      s.allocation && s.allocation.kind !== 'uniform'
        ? layerAllocation(s.allocation, layers, (l) => readLayerWeight(model, l), (l) => X.get(l.name)!, x.sparsity).sparsity
        : new Map<number, number>();
    const layerSparsity = blockSparsity.size ? layerSparsities(layers, blockSparsity, x.sparsity) : undefined;
    return { ...x, label: settingLabel(x), patternSpec: parsePattern(x.pattern, x.sparsity), blockSparsity, ...(layerSparsity ? { layerSparsity } : {}) };
  });
  const first = settings[0]!;
  const several = settings.length > 1 ? { settings: settingSpecs(settings) } : {};
  const workerInitData = workerInit(model, layers, { G, X }, tokens, { ...s, layerSparsity: first.layerSparsity, ...several });
  return { model, layers, pattern, tokens, windows, workerInit: workerInitData, streamed: false, blockSparsity: first.blockSparsity, settings, statsFile, statsCached: cached, statsSeconds, hashes };
}

/** The settings as a job names them (JSON for workers anywhere). */
export function settingSpecs(settings: PreparedSetting[]): SettingSpec[] {
  return settings.map((x) => ({ sparsity: x.sparsity, pattern: x.pattern, ...(x.layerSparsity ? { layerSparsity: x.layerSparsity } : {}) }));
}

/** sha256 of the fitness token ids and of a user's statistics file: what a run stores and a resume compares. */
export interface DataHashes {
  fitness: string;
  stats?: string;
}

async function statsFileSha256(file: string, flag: string): Promise<string> {
  if (!existsSync(file) || !statSync(file).isFile()) throw new InputError(`${flag} ${file}: not found or not a file`);
  return fileSha256(file);
}

/** True when the cache file exists and was made for exactly these settings. */
export function cachedStatsMatch(file: string, meta: Record<string, string>): boolean {
  if (!existsSync(file) || !statSync(file).isFile()) return false;
  try {
    const raw = SafetensorsFile.open(file);
    try {
      return stableJson(pick(raw.metadata, Object.keys(meta))) === stableJson(meta);
    } finally {
      raw.close();
    }
  } catch {
    return false;
  }
}

function pick(o: Record<string, string>, keys: string[]): Record<string, string> {
  return Object.fromEntries(keys.map((k) => [k, o[k]!]));
}
