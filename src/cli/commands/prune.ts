/**
 * `symprune prune`: apply a metric (any search-space expression) or a baseline method
 * to a decoder (Hugging Face folder or ONNX) and write the pruned model in the input's
 * form (or --format's), its tokenizer and prune.json.
 * Every input is checked before anything is written; the output folder may not be
 * the input model's.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { evaluateModel } from '../../eval/evaluate-model.ts';
import { resolveModel } from '../../model/load.ts';
import { loadModel } from '../../onnx/model-io.ts';
import { outputFormat } from '../../model/write.ts';
import { openModelSource } from '../../model/source.ts';
import { pruneModelSource, streamFileFor, writePrunedModel } from '../../prune/prune-file.ts';
import { applyDeviceFlags, deviceFlags, type DeviceArgs } from '../device-flags.ts';
import { progress } from '../progress.ts';
import { booleanFlag, checkSeqlen, choiceFlag, dataFlag, inputFileFlag, intFlag, modelFlag, numberFlag, outputDirFlag, stringFlag, threadsFlag } from '../validate.ts';
import { graphMaxPositions } from '../../onnx/max-positions.ts';
import { METHOD_NAMES, baselineMethod, metricMethodFromText, type PruneMethod } from '../../prune/baselines.ts';
import { CALIBRATION_SEED, DEFAULT_CALIBRATION_DATA, calibrationShape, DEFAULT_NSAMPLES, DEFAULT_SEQLEN, checkWindowSpec, loadCalibrationWindows, modelVocabSize } from '../../prune/calibration-windows.ts';
import { prunableLayers, type CalibrationMode, type LayerReport } from '../../prune/prune-model.ts';
import { buildPruneReport } from '../../prune/prune-report.ts';
import { parsePattern } from '../../prune/score.ts';
import { LayerStatsFile } from '../../prune/stats-file.ts';
import { formatTasks, taskFlag, taskTokenizer, tasksFromArgs } from '../zero-shot-flags.ts';
import { scoreTasks } from '../../eval/zero-shot.ts';
import { OWL_DEFAULT_LAMBDA, OWL_DEFAULT_M, allocationFromText, parseAllocation, type Allocation } from '../../prune/allocation.ts';

interface Args extends DeviceArgs {
  model?: string;
  tokenizer?: string;
  format?: string;
  metric?: string;
  method?: string;
  sparsity: number;
  pattern: string;
  calibration: string;
  data?: string;
  nsamples: number;
  seqlen: number;
  stats?: string;
  out: string;
  eval?: boolean;
  'eval-tokens'?: number;
  threads?: number;
  json?: boolean;
  allocation?: string;
  'owl-m'?: number;
  'owl-lambda'?: number;
  task?: string[];
}

/** The layer-wise sparsity flags shared by prune, baselines and search. */
export function allocationFlags<T>(y: import('yargs').Argv<T>): import('yargs').Argv<T> {
  return y
    .option('allocation', stringFlag('allocation', { describe: 'layer-wise sparsity (unstructured only): uniform (default), owl (more outliers, less pruning), an expression over the per-block R, A, M, D (e.g. mms(R), which is OWL), or a file from `symprune export` of an allocation search' }))
    .option('owl-m', numberFlag('owl-m', { min: 0, minExclusive: true, describe: `OWL's outlier threshold M, also R's in expressions (scores above M x the block's mean) (default ${OWL_DEFAULT_M}, or an allocation file's)` }))
    .option('owl-lambda', numberFlag('owl-lambda', { min: 0, max: 0.5, maxExclusive: true, describe: `spread: block sparsities span at most 2·lambda around the mean (default ${OWL_DEFAULT_LAMBDA}, or an allocation file's)` })) as never;
}

/** --allocation uniform|owl|EXPR|FILE with --owl-m/--owl-lambda (given flags win over a file's values). */
export function allocationArg(a: { allocation?: string; 'owl-m'?: number; 'owl-lambda'?: number }): Allocation {
  const arg = a.allocation ?? 'uniform';
  const given = { m: a['owl-m'], lambda: a['owl-lambda'] };
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(arg);
  } catch {
    st = undefined;
  }
  if (st?.isFile()) return allocationFromText(fs.readFileSync(arg, 'utf8'), `--allocation ${arg}`, given);
  if (/\.(json|txt)$/i.test(arg)) throw new InputError(`--allocation ${arg}: file not found`);
  return parseAllocation(arg, given.m, given.lambda);
}

/** allocationArg, refused for N:M patterns. */
export function allocationFromArgs(a: { allocation?: string; 'owl-m'?: number; 'owl-lambda'?: number }, pattern: { kind: string }): Allocation {
  const alloc = allocationArg(a);
  if (alloc.kind !== 'uniform' && pattern.kind !== 'unstructured') throw new InputError(`--allocation ${a.allocation}: needs --pattern unstructured (N:M fixes every block at 50%)`);
  return alloc;
}

/** --metric: a file (infix, symprune JSON or Pruner-Zero tree JSON) or an inline infix expression. */
export function metricFromArg(arg: string): PruneMethod {
  let text = arg;
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(arg);
  } catch {
    st = undefined;
  }
  if (st?.isFile()) text = metricOfAllocationFile(fs.readFileSync(arg, 'utf8'));
  else if (/\.(json|txt)$/i.test(arg)) throw new InputError(`--metric ${arg}: file not found`);
  try {
    return metricMethodFromText(text);
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`--metric ${arg}: ${e.message}`);
    throw e;
  }
}

/** An allocation search's export names the metric it was searched for: `--metric` reads that; any other text is returned as it is. */
function metricOfAllocationFile(text: string): string {
  if (!text.trimStart().startsWith('{')) return text;
  try {
    const o = JSON.parse(text) as { kind?: unknown; metric?: unknown };
    return o.kind === 'allocation' && typeof o.metric === 'string' ? o.metric : text;
  } catch {
    return text; // the metric parser names the JSON error
  }
}

/** Refuse an output folder that is, or would overwrite, the input model. */
export function checkOutDir(out: string, modelPath: string, modelDir: string): string {
  const dir = path.resolve(out);
  const real = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new InputError(`--out ${out}: exists and is not a folder`);
  if (real(dir) === real(modelDir)) throw new InputError(`--out ${out}: is the input model's folder; choose a new folder so the model is not overwritten`);
  if (real(path.join(dir, 'model.onnx')) === real(modelPath)) throw new InputError(`--out ${out}: would overwrite the input model ${modelPath}`);
  return dir;
}

/**
 * One line when a metric's scores could not rank the weights of some layers: NaN/inf, or
 * constant within every row (the mask then follows column order). The search rejects such
 * metrics as invalid; prune still prunes, and says so.
 */
export function degenerateWarning(label: string, layers: LayerReport[]): string | null {
  const of = (kind: 'constant' | 'non-finite'): LayerReport[] => layers.filter((l) => l.problem?.kind === kind);
  const constant = of('constant');
  const nonFinite = of('non-finite');
  if (!constant.length && !nonFinite.length) return null;
  const parts: string[] = [];
  const where = (ls: LayerReport[]): string => `${ls.length} of ${layers.length} layers (${ls[0]!.name}${ls.length > 1 ? ', ...' : ''})`;
  if (constant.length) parts.push(`constant within every row in ${where(constant)}`);
  if (nonFinite.length) {
    const p = nonFinite[0]!.problem as { nan: number; inf: number };
    parts.push(`NaN or infinite in ${where(nonFinite)}: ${p.nan} NaN and ${p.inf} infinite scores in the first`);
  }
  return `symprune: warning: metric ${label}: scores are ${parts.join('; ')}; there the mask does not follow the metric (the search rejects such metrics as invalid)`;
}

export const CALIBRATION_MODES = ['one-shot', 'sequential'] as const;

/** `--eval-tokens` must cover at least one window, or the perplexity is over nothing. */
export function checkEvalTokens(evalTokens: number | undefined, seqlen: number): void {
  if (evalTokens !== undefined && evalTokens < seqlen) throw new InputError(`--eval-tokens ${evalTokens}: fewer than one window of --seqlen ${seqlen}`);
}

export function checkCalibrationMode(mode: string): CalibrationMode {
  if (mode !== 'one-shot' && mode !== 'sequential') throw new InputError(`--calibration ${mode}: expected one-shot or sequential`);
  return mode;
}

export const pruneCommand: CommandModule<object, Args> = {
  command: 'prune',
  describe: 'prune an ONNX decoder with a metric or a baseline method and write the pruned model',
  builder: (y) =>
    deviceFlags(taskFlag(allocationFlags(y), true))
      .option('model', modelFlag())
      .option('tokenizer', inputFileFlag('tokenizer', { describe: 'tokenizer.json for text data (default: the one beside the model)' }))
      .option('format', choiceFlag('format', ['hf', 'onnx'], { describe: "output: hf (safetensors folder, as the input) or onnx; default: the input's form" }))
      .option('metric', stringFlag('metric', { describe: 'metric: a file (infix, JSON, Pruner-Zero tree JSON) or an infix expression' }))
      .option('method', choiceFlag('method', METHOD_NAMES, { describe: 'baseline' }))
      .option('sparsity', numberFlag('sparsity', { min: 0, max: 1, minExclusive: true, maxExclusive: true, default: 0.5, describe: 'fraction of weights pruned, in (0, 1)' }))
      .option('pattern', stringFlag('pattern', { default: 'unstructured', describe: 'unstructured (per output row), 2:4 or 4:8' }))
      .option('calibration', choiceFlag('calibration', CALIBRATION_MODES, { default: 'sequential', describe: 'one-shot (dense statistics) or sequential (block by block)' }))
      .option('data', dataFlag('data', { describe: `calibration data: brown:<split>, FILE.txt, FILE.npy, FILE.bin (default ${DEFAULT_CALIBRATION_DATA})` }))
      .option('nsamples', intFlag('nsamples', { min: 1, describe: `calibration windows (default ${DEFAULT_NSAMPLES}; with a 2-D .npy of samples: its rows)` }))
      .option('seqlen', intFlag('seqlen', { min: 2, describe: `tokens per window (calibration and --eval) (default ${DEFAULT_SEQLEN}; with a 2-D .npy of samples: its row length)` }))
      .option('stats', inputFileFlag('stats', { describe: 'safetensors file of per-layer statistics (L.G [out,in], L.X [in]), e.g. from `symprune stats`: G is used whenever the metric reads it, X only with --calibration one-shot' }))
      .option('out', outputDirFlag('out', { demandOption: true, describe: 'output folder: the pruned model (config.json + safetensors, or model.onnx), tokenizer files, prune.json' }))
      .option('eval', booleanFlag('measure brown:test perplexity of the pruned model'))
      .option('eval-tokens', intFlag('eval-tokens', { min: 2, describe: 'cap on evaluated tokens (at least one window of --seqlen)' }))
      .option('threads', threadsFlag())
      .option('json', booleanFlag('print prune.json to stdout')) as never,
  handler: async (a) => {
    const t0 = performance.now();
    // Flags first: nothing is loaded or written before they are all valid.
    if ((a.metric === undefined) === (a.method === undefined)) throw new InputError('give exactly one of --metric FILE|EXPR or --method NAME');
    const pattern = parsePattern(a.pattern, a.sparsity);
    const mode = checkCalibrationMode(a.calibration);
    const allocation = allocationFromArgs(a, pattern);
    checkWindowSpec({ nsamples: a.nsamples, seqlen: a.seqlen });
    // A 2-D .npy of samples [n, seqlen] fixes both (used row by row); otherwise the defaults.
    ({ nsamples: a.nsamples, seqlen: a.seqlen } = calibrationShape(a));
    checkEvalTokens(a['eval-tokens'], a.seqlen);
    const method = a.metric !== undefined ? metricFromArg(a.metric) : baselineMethod(a.method!);
    const { maxMemory } = applyDeviceFlags(a);
    const described = resolveModel(a.model, a.tokenizer);
    const { modelPath, dir, tokenizerPath } = described;
    const outDir = checkOutDir(a.out, modelPath, dir);
    const tasks = a.eval ? tasksFromArgs(a.task, true) : [];
    const tok = taskTokenizer(tasks, tokenizerPath);
    const format = outputFormat(described, a.format);

    const source = await openModelSource(described);
    const model = source.model;
    const layers = prunableLayers(model);
    const stats = a.stats ? LayerStatsFile.open(a.stats, layers, { G: method.needs.G, X: false }) : undefined;
    try {
      const needWindows =
        method.kind === 'sparsegpt' ||
        allocation.kind !== 'uniform' ||
        (method.needs.G && !stats?.has.G) ||
        (method.needs.X && !(mode === 'one-shot' && stats?.has.X));
      if (needWindows || a.eval) checkSeqlen('--seqlen', a.seqlen, graphMaxPositions(model));
      const previous = ['model.onnx', 'model.safetensors', 'model.safetensors.index.json'].map((f) => path.join(outDir, f)).filter((f) => fs.existsSync(f));
      if (previous.length) process.stderr.write(`symprune: note: replacing the model in ${outDir} (${previous.map((f) => path.basename(f)).join(', ')})\n`);
      const windows = needWindows
        ? await loadCalibrationWindows({ data: a.data, nsamples: a.nsamples, seqlen: a.seqlen, tokenizerPath, vocabSize: modelVocabSize(model), seed: CALIBRATION_SEED })
        : undefined;
      let bar: ReturnType<typeof progress> | null = null;
      let stage = '';
      const { result, pruned } = await pruneModelSource(source, streamFileFor(format, outDir), {
        maxMemory,
        method,
        sparsity: a.sparsity,
        pattern,
        calibration: mode,
        allocation,
        windows,
        stats,
        layers,
        threads: a.threads,
        onProgress: (s, d, n) => {
          if (s !== stage) {
            bar?.done();
            stage = s;
            bar = progress(s, n);
          }
          bar!.update(d);
        },
      });
      (bar as ReturnType<typeof progress> | null)?.done();
      const warning = degenerateWarning(result.label, result.layers);
      if (warning) process.stderr.write(warning + '\n');

      const evaluated = pruned.kind === 'memory' ? pruned.model : pruned.file;
      const ppl = a.eval ? await evaluateModel(evaluated, { tokenizerPath, seqlen: a.seqlen, maxTokens: a['eval-tokens'], threads: a.threads, maxMemory }) : null;
      // Zero-shot scoring runs the whole pruned model.
      const whole = async () => (pruned.kind === 'memory' ? pruned.model : await loadModel(pruned.file));
      const evalResult = ppl && tok ? { ...ppl, tasks: await scoreTasks(await whole(), tok, tasks, { threads: a.threads }) } : ppl;
      const saved: { externalDataFile?: string } = format === 'onnx' ? await writePrunedModel(described, pruned, format, outDir) : {};
      const report = buildPruneReport(
        {
          result,
          model: modelPath,
          tree: method.tree,
          calibrationData: windows ? a.data ?? DEFAULT_CALIBRATION_DATA : null,
          seed: CALIBRATION_SEED,
          statsFile: a.stats ?? null,
          eval: evalResult,
          seconds: (performance.now() - t0) / 1000,
          externalData: saved.externalDataFile ? path.basename(saved.externalDataFile) : null,
        },
        method.grouping === 'layer' ? 'per layer' : 'per output row',
      );
      const json = JSON.stringify(report, null, 2);
      if (format === 'hf') await writePrunedModel(described, pruned, format, outDir, { 'prune.json': report });
      else fs.writeFileSync(path.join(outDir, 'prune.json'), json + '\n');
      if (a.json) {
        process.stdout.write(json + '\n');
      } else {
        const pplText = evalResult ? `, ${evalResult.data} ppl ${evalResult.ppl.toFixed(3)}` : '';
        process.stdout.write(
          `pruned ${result.layers.length} layers with ${result.label} (${result.pattern}, ${result.calibration}): ` +
            `${(100 * result.overall.sparsity).toFixed(2)}% of ${result.overall.total} weights${pplText}, ${report.seconds.command.toFixed(1)}s -> ${outDir}\n`,
        );
        if (evalResult && 'tasks' in evalResult) process.stdout.write(formatTasks(evalResult.tasks) + '\n');
      }
    } finally {
      stats?.close();
      await source.close();
    }
  },
};
