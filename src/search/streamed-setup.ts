/**
 * A search's data when its model is searched block by block (memory.ts): the model stays on
 * disk, X (and G, when a tree or baseline of the run may read it) is computed once block by
 * block into the run's statistics file beside the database (as `stats` does over budget),
 * and the evaluator reads it back one layer at a time (streamed-candidates.ts).
 *
 * Layer-wise allocations read every layer's dense weights at once, so a run with one (OWL,
 * an expression, or `--evolve allocation`) is refused here; so is a run whose one block plus
 * hidden states, or whose G block by block, would still not fit the budget.
 */
import { InputError } from '../errors.ts';
import { resolveModel } from '../model/load.ts';
import { openModelSource } from '../model/source.ts';
import { baselineMethod } from '../prune/baselines.ts';
import { CALIBRATION_SEED, loadCalibrationWindows } from '../prune/calibration-windows.ts';
import { computeGradients, denseX, prunableLayers, streamedGradientMemoryBytes, type GradientStore } from '../prune/prune-model.ts';
import { LayerStatsFile, writeStatsFile } from '../prune/stats-file.ts';
import { parsePattern } from '../prune/score.ts';
import { KNOWN_METRICS } from '../search-space/known.ts';
import { readsG } from '../eval/streamed-candidates.ts';
import { parseMetric } from '../search-space/parse.ts';
import { gib, streamedSearchBytes } from './memory.ts';
import { cachedStatsMatch, runInputs, statsCache, type PreparedData, type PreparedSetting, type PrepareOptions, type PreparePaths } from './setup.ts';
import { FIELD_NAMES, runSettings, settingLabel, type SearchSettings, type SettingNames } from './settings.ts';

/** Windows per session run of the streamed evaluator. */
export const STREAMED_BATCH = 4;

/** Whether anything the run evaluates may read G: its terminals, its seed trees, or a baseline. */
export function runReadsG(s: SearchSettings): boolean {
  const terminals = s.gp?.terminals ?? ['W', 'G', 'X'];
  const seeds = [...(s.gp?.seeds ?? []).map((x) => parseMetric(x)), ...(s.seedKnown ? Object.values(KNOWN_METRICS).map((k) => k.tree) : [])];
  return terminals.includes('G') || seeds.some(readsG) || s.baselines.some((m) => m !== 'sparsegpt' && baselineMethod(m).needs.G);
}

/**
 * InputError, before any work, when a run cannot be searched block by block: a layer-wise
 * allocation, or one block plus the windows' hidden states (or G block by block) over the
 * budget. The fitness windows are counted at --eval-tokens (fewer when the data is shorter).
 */
export async function checkStreamedRun(modelPath: string, s: SearchSettings, maxMemory: number, names: SettingNames = FIELD_NAMES): Promise<void> {
  if (s.evolveAllocation) throw new InputError(`${names.evolveAllocation}: reads every layer's dense weights at once, and this model is searched block by block (over the memory budget); evolve the allocation on a smaller model of the family`);
  if (s.allocation && s.allocation.kind !== 'uniform') throw new InputError(`${names.allocation}: a layer-wise allocation reads every layer's dense weights at once, and this model is searched block by block (over the memory budget); search with the uniform allocation`);
  const source = await openModelSource(resolveModel(modelPath));
  try {
    const layers = prunableLayers(source.model);
    const fitnessWindows = Math.floor(s.evalTokens / s.seqlen);
    const need = streamedSearchBytes(source, layers, { seqlen: s.seqlen, fitnessWindows, calibrationWindows: s.nsamples, batchSize: STREAMED_BATCH });
    if (need > maxMemory)
      throw new InputError(
        `search block by block still holds about ${gib(need)} (one decoder block, the hidden states of ${Math.max(fitnessWindows, s.nsamples)} windows of ${s.seqlen} tokens), over --max-memory ${gib(maxMemory)}; use fewer ${names.evalTokens} or ${names.nsamples}, a shorter ${names.seqlen}, or raise --max-memory`,
      );
    if (!runReadsG(s) || s.stats) return; // a user's file is checked for G when it is read
    const gNeed = streamedGradientMemoryBytes(source, layers, s.nsamples, s.seqlen);
    if (gNeed > maxMemory)
      throw new InputError(`G needs about ${gib(gNeed)} even block by block, over --max-memory ${gib(maxMemory)}; raise --max-memory, use fewer ${names.nsamples} or a shorter ${names.seqlen}, or search without G (--terminals W,X and baselines without G)`);
  } finally {
    await source.close();
  }
}

/** The run's data with its model on disk (see the file comment); checkStreamedRun has passed. */
export async function prepareStreamedData(s: SearchSettings, paths: PreparePaths, opts: PrepareOptions): Promise<PreparedData> {
  const log = opts.log ?? (() => {});
  const source = await openModelSource(resolveModel(paths.modelPath));
  try {
    const model = source.model;
    const { layers, pattern, vocabSize, tokens, hashes } = await runInputs(model, s, paths, opts);
    const user = s.stats ? LayerStatsFile.open(s.stats, layers, { G: false, X: false }) : null;
    const computeG = runReadsG(s) && !user?.has.G;
    const hasG = computeG || !!user?.has.G;
    const t0 = performance.now();
    const { file: cacheFile, meta } = statsCache(s, paths.dbPath, hasG ? (s.stats ?? 'computed') : 'none');
    let statsFile = cacheFile;
    let cached = false;
    try {
      if (user?.has.X && (user.has.G || !hasG)) {
        statsFile = user.file; // a user's complete file is read as it is
        cached = true;
      } else if (cachedStatsMatch(cacheFile, meta)) {
        cached = true;
      } else {
        const windows = await loadCalibrationWindows({ data: s.calibData, nsamples: s.nsamples, seqlen: s.seqlen, tokenizerPath: paths.tokenizerPath, vocabSize, seed: CALIBRATION_SEED });
        let G: GradientStore | null = null;
        try {
          if (computeG) {
            log(`dense statistics block by block: G of ${layers.length} layers over ${windows.length} x ${s.seqlen} tokens of ${s.calibData}`);
            G = await computeGradients(source, null, layers, windows, 'streamed', { threads: opts.threads, onBatch: (d, t) => opts.onProgress?.('G', d, t) });
          }
          log(`dense statistics block by block: X of ${layers.length} layers over ${windows.length} x ${s.seqlen} tokens of ${s.calibData}`);
          const X = await denseX(source, layers, windows, { threads: opts.threads, onBatch: (d, t) => opts.onProgress?.('X', d, t) });
          // G one layer at a time, from the scratch file or the user's file.
          const gOf = (name: string): Float32Array | null => (G ? (G.get(name) ?? null) : hasG ? user!.get(name, { X: false }).G : null);
          writeStatsFile(cacheFile, layers, (l) => ({ G: gOf(l.name), X: X.get(l.name) ?? null }), meta, { G: hasG, X: true });
        } finally {
          G?.close();
        }
      }
    } finally {
      user?.close();
    }
    const settings = runSettings(s).map((x): PreparedSetting => ({ ...x, label: settingLabel(x), patternSpec: parsePattern(x.pattern, x.sparsity), blockSparsity: new Map() }));
    return { model, layers, pattern, tokens, windows: [], workerInit: null, streamed: true, blockSparsity: new Map(), settings, statsFile, statsCached: cached, statsSeconds: (performance.now() - t0) / 1000, hashes };
  } finally {
    await source.close();
  }
}
