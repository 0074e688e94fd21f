/**
 * symprune as a library: what the `symprune` command does, callable from code.
 * Everything here is plain functions and classes; nothing touches the process (signals,
 * exit codes, the terminal). Bad input throws `InputError`.
 */
export { InputError } from './errors.ts';

// Models: load an ONNX model (external data too), find its prunable linear layers.
export { loadModel, saveModel } from './onnx/model-io.ts';
export type { ModelProto } from './onnx/proto.ts';
export { resolveModel, loadModelGraph, modelSha256, BUNDLED_MODEL_DIR } from './model/load.ts';
export type { ModelDescription } from './model/load.ts';
export { writeHfCheckpoint } from './model/hf-write.ts';
export { openHfWeights } from './model/hf-weights.ts';
export { discoverLayers } from './prune/discover.ts';
export type { PrunableLayer } from './prune/discover.ts';

// Data and calibration statistics (W, G, X).
export { loadTokens } from './data/dataset.ts';
export { loadCalibrationWindows, modelVocabSize, CALIBRATION_SEED } from './prune/calibration-windows.ts';
export { denseGradients, denseX, prunableLayers } from './prune/prune-model.ts';
export { writeStatsFile, LayerStatsFile } from './prune/stats-file.ts';

// Metrics and pruning.
export { parseMetric, toInfix, toPrunerZeroJson, toLatex, simplify, canonicalHash, validateTree, KNOWN_METRICS } from './search-space/index.ts';
export type { Tree } from './search-space/index.ts';
export { pruneModel } from './prune/prune-model.ts';
export type { PruneModelOptions, PruneResult, CalibrationMode } from './prune/prune-model.ts';
export { baselineMethod, metricMethodFromText, METHOD_NAMES } from './prune/baselines.ts';
export type { PruneMethod } from './prune/baselines.ts';
export { parsePattern } from './prune/score.ts';

// Evaluation.
export { PerplexityEvaluator } from './eval/perplexity.ts';
export type { PerplexityResult } from './eval/perplexity.ts';
export { evaluateModel } from './eval/evaluate-model.ts';
export { EvalPool } from './eval/pool.ts';
export type { TaskRunner, TaskOutcome } from './eval/task-runner.ts';

// Search.
export { runSearch, storedModel } from './search/run.ts';
export type { SearchOptions, SearchSummary, SearchProgress, ModelFiles } from './search/run.ts';
export { localRunner, queueRunner } from './search/runners.ts';
export type { RunnerFactory, RunnerJob } from './search/runners.ts';
export { SEARCH_DEFAULTS, checkSettings, shortTokens } from './search/settings.ts';
export type { SearchSettings, GpOptions, SettingNames } from './search/settings.ts';
export { DEFAULT_GP_CONFIG } from './gp/index.ts';
export type { GpConfig } from './gp/index.ts';

// The run log: open it, read it, export its best metric.
export { openDatabase } from './store/schema.ts';
export { listRuns, getRun, RunStore } from './store/store.ts';
export type { RunRow } from './store/store.ts';
export { buildReport, formatReport, reportJson, reportSvg } from './store/report.ts';
export { exportMetric, EXPORT_FORMATS } from './store/export.ts';
export type { ExportFormat, Exported } from './store/export.ts';
