/**
 * `symprune baselines`: the dense model and every baseline method pruned in the same
 * harness at one sparsity and pattern, with brown:test perplexity, so a discovered
 * metric has its yardsticks measured on the same model, data and machine.
 * G (and, one-shot, X) is computed once on the dense model and shared by the methods.
 */
import { applyDeviceFlags, deviceFlags, type DeviceArgs } from '../device-flags.ts';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { cloneModel } from '../../onnx/graph-edit.ts';
import { loadTokens } from '../../data/dataset.ts';
import { loadModelGraph, resolveModel } from '../../model/load.ts';
import { progress } from '../progress.ts';
import { booleanFlag, checkSeqlen, choiceFlag, dataFlag, inputFileFlag, intFlag, modelFlag, numberFlag, stringFlag, threadsFlag } from '../validate.ts';
import { graphMaxPositions } from '../../onnx/max-positions.ts';
import { METHOD_NAMES, baselineMethod } from '../../prune/baselines.ts';
import { CALIBRATION_SEED, DEFAULT_CALIBRATION_DATA, calibrationShape, DEFAULT_NSAMPLES, DEFAULT_SEQLEN, checkWindowSpec, loadCalibrationWindows, modelVocabSize } from '../../prune/calibration-windows.ts';
import { MemoryStats, denseGradients, denseX, prunableLayers, pruneModel } from '../../prune/prune-model.ts';
import { parsePattern } from '../../prune/score.ts';
import { CALIBRATION_MODES, allocationFlags, allocationFromArgs, checkCalibrationMode, checkEvalTokens, metricFromArg } from './prune.ts';
import { evaluateModel } from '../../eval/evaluate-model.ts';
import { OWL_DEFAULT_LAMBDA, OWL_DEFAULT_M, allocationName, type Allocation } from '../../prune/allocation.ts';
import { scoreTasks, type TaskResult } from '../../eval/zero-shot.ts';
import { taskFlag, taskTokenizer, tasksFromArgs } from '../zero-shot-flags.ts';

interface Args extends DeviceArgs {
  model?: string;
  tokenizer?: string;
  sparsity: number;
  pattern: string;
  methods?: string;
  calibration: string;
  data?: string;
  nsamples: number;
  seqlen: number;
  'eval-tokens'?: number;
  threads?: number;
  json?: boolean;
  allocation?: string;
  'owl-m'?: number;
  'owl-lambda'?: number;
  task?: string[];
  metric?: string;
}

/** `acc ± se | acc_norm ± se |` cells of each task, in percent. */
function taskCells(r: Record<string, TaskResult> | undefined): string {
  const pct = (v: number, se: number) => `${(100 * v).toFixed(1)} ± ${(100 * se).toFixed(1)}`;
  return Object.values(r ?? {})
    .map((t) => ` ${pct(t.acc, t.acc_stderr)} | ${pct(t.acc_norm, t.acc_norm_stderr)} |`)
    .join('');
}

/** Rows added to the default list for unstructured sparsity: OWL on top of Wanda and Pruner-Zero. */
const OWL_ROWS = ['wanda+owl', 'pruner-zero+owl'];

/**
 * A --methods entry: NAME, NAME+owl (OWL's allocation on top of that method) or NAME+alloc
 * (the expression given to --allocation). --allocation owl applies to every row; an
 * expression only to the +alloc rows, so they stand beside the uniform and OWL ones.
 */
function methodRow(name: string, all: Allocation, owl: Allocation & { kind: 'owl' }): { name: string; allocation: Allocation } {
  if (name.endsWith('+owl')) return { name, allocation: owl };
  if (name.endsWith('+alloc')) {
    if (all.kind !== 'expr') throw new InputError(`--methods ${name}: a +alloc row needs --allocation EXPR or FILE (an allocation expression)`);
    return { name, allocation: all };
  }
  return all.kind === 'owl' ? { name: `${name}+owl`, allocation: all } : { name, allocation: { kind: 'uniform' } };
}

export interface BaselineRow {
  method: string;
  ppl: number;
  sparsity: number;
  pruneSeconds: number;
  evalSeconds: number;
  /** Zero-shot tasks (--task; default the shipped Brown tasks). */
  tasks?: Record<string, TaskResult>;
}

export const baselinesCommand: CommandModule<object, Args> = {
  command: 'baselines',
  describe: 'brown:test perplexity of the dense model and of every baseline pruning method',
  builder: (y) =>
    deviceFlags(taskFlag(allocationFlags(y), true))
      .option('model', modelFlag())
      .option('tokenizer', inputFileFlag('tokenizer', { describe: 'tokenizer.json for text data (default: the one beside the model)' }))
      .option('metric', stringFlag('metric', { describe: 'also a metric (file or infix expression, as prune --metric): rows metric (and metric+owl when unstructured)' }))
      .option('sparsity', numberFlag('sparsity', { min: 0, max: 1, minExclusive: true, maxExclusive: true, default: 0.5, describe: 'fraction of weights pruned, in (0, 1)' }))
      .option('pattern', stringFlag('pattern', { default: 'unstructured', describe: 'unstructured (per output row), 2:4 or 4:8' }))
      .option('methods', stringFlag('methods', { describe: `comma-separated subset of ${METHOD_NAMES.join(',')}, each optionally NAME+owl (default: all, and ${OWL_ROWS.join(', ')} when unstructured)` }))
      .option('calibration', choiceFlag('calibration', CALIBRATION_MODES, { default: 'sequential', describe: 'one-shot or sequential' }))
      .option('data', dataFlag('data', { describe: `calibration data (default ${DEFAULT_CALIBRATION_DATA})` }))
      .option('nsamples', intFlag('nsamples', { min: 1, describe: `calibration windows (default ${DEFAULT_NSAMPLES}; with a 2-D .npy of samples: its rows)` }))
      .option('seqlen', intFlag('seqlen', { min: 2, describe: `tokens per window (calibration and evaluation) (default ${DEFAULT_SEQLEN}; with a 2-D .npy of samples: its row length)` }))
      .option('eval-tokens', intFlag('eval-tokens', { min: 2, describe: 'cap on evaluated brown:test tokens (at least one window of --seqlen)' }))
      .option('threads', threadsFlag())
      .option('json', booleanFlag('print one JSON object')) as never,
  handler: async (a) => {
    applyDeviceFlags(a);
    const t0 = performance.now();
    const pattern = parsePattern(a.pattern, a.sparsity);
    const mode = checkCalibrationMode(a.calibration);
    checkWindowSpec({ nsamples: a.nsamples, seqlen: a.seqlen });
    // A 2-D .npy of samples [n, seqlen] fixes both (used row by row); otherwise the defaults.
    ({ nsamples: a.nsamples, seqlen: a.seqlen } = calibrationShape(a));
    checkEvalTokens(a['eval-tokens'], a.seqlen);
    const allocation = allocationFromArgs(a, pattern);
    const owl = { kind: 'owl' as const, m: a['owl-m'] ?? (allocation.kind === 'expr' ? allocation.m : OWL_DEFAULT_M), lambda: a['owl-lambda'] ?? (allocation.kind === 'expr' ? allocation.lambda : OWL_DEFAULT_LAMBDA) };
    const owlRows = pattern.kind === 'unstructured' && allocation.kind !== 'owl';
    const exprRows = allocation.kind === 'expr' ? ['wanda+alloc', ...(a.metric !== undefined ? ['metric+alloc'] : [])] : [];
    const metricRows = a.metric !== undefined ? ['metric', ...(owlRows ? ['metric+owl'] : [])] : [];
    const names = a.methods ? a.methods.split(',').map((s) => s.trim()).filter(Boolean) : [...METHOD_NAMES, ...(owlRows ? OWL_ROWS : []), ...metricRows, ...exprRows];
    const metric = a.metric !== undefined ? metricFromArg(a.metric) : null;
    const base = (n: string): string => n.replace(/\+(owl|alloc)$/, '');
    if (names.some((n) => base(n) === 'metric') && !metric) throw new InputError('--methods: the row metric needs --metric');
    if (names.length === 0) throw new InputError('--methods: empty list');
    if (pattern.kind !== 'unstructured' && names.some((n) => n.endsWith('+owl'))) throw new InputError(`--methods: OWL rows need --pattern unstructured`);
    const rowSpecs = names.map((n) => methodRow(n, allocation, owl));
    const methods = rowSpecs.map((r) => (base(r.name) === 'metric' ? metric! : baselineMethod(base(r.name))));
    if (rowSpecs.some((r) => r.allocation.kind === 'owl')) allocationFromArgs({ ...a, allocation: 'owl' }, pattern); // --owl-m/--owl-lambda checked
    const tasks = tasksFromArgs(a.task, true);
    const described = resolveModel(a.model, a.tokenizer);
    const { modelPath, tokenizerPath } = described;
    const tok = taskTokenizer(tasks, tokenizerPath);
    const model = await loadModelGraph(described);
    checkSeqlen('--seqlen', a.seqlen, graphMaxPositions(model));
    const layers = prunableLayers(model);
    const vocabSize = modelVocabSize(model);
    const windows = await loadCalibrationWindows({ data: a.data, nsamples: a.nsamples, seqlen: a.seqlen, tokenizerPath, vocabSize, seed: CALIBRATION_SEED });
    const testTokens = await loadTokens('brown:test', { tokenizerPath, vocabSize });
    const evalOpts = { tokens: testTokens, seqlen: a.seqlen, maxTokens: a['eval-tokens'], threads: a.threads };
    const log = (s: string) => {
      if (!a.json && process.stderr.isTTY) process.stderr.write(s + '\n');
    };

    const scoreAll = async (m: typeof model) => (tok ? await scoreTasks(m, tok, tasks, { threads: a.threads }) : undefined);
    const dense = { ...(await evaluateModel(model, evalOpts)), tasks: await scoreAll(model) };
    log(`dense: ppl ${dense.ppl.toFixed(3)}`);
    const tg = performance.now();
    const G = methods.some((m) => m.needs.G) ? await denseGradients(model, layers, windows, { threads: a.threads }) : null;
    const gradientSeconds = (performance.now() - tg) / 1000;
    // Dense X: one-shot pruning reads it, and OWL's allocation always does (sequential pruning measures its own).
    const needDenseX = (mode === 'one-shot' && methods.some((m) => m.needs.X)) || rowSpecs.some((r) => r.allocation.kind !== 'uniform');
    const X = needDenseX ? await denseX(model, layers, windows, { threads: a.threads }) : null;
    const shared = new MemoryStats(X, G);

    const rows: BaselineRow[] = [];
    for (const [i, method] of methods.entries()) {
      const row = rowSpecs[i]!;
      const pruned = cloneModel(model);
      const bar = progress(row.name, layers.length);
      const r = await pruneModel(pruned, {
        method,
        sparsity: a.sparsity,
        pattern,
        calibration: mode,
        allocation: row.allocation,
        windows,
        stats: shared,
        layers,
        threads: a.threads,
        onProgress: (s, d) => s === 'prune' && bar.update(d),
      });
      bar.done();
      const ev = await evaluateModel(pruned, evalOpts);
      rows.push({ method: row.name, ppl: ev.ppl, sparsity: r.overall.sparsity, pruneSeconds: r.seconds.total, evalSeconds: ev.seconds, tasks: await scoreAll(pruned) });
      log(`${row.name}: ppl ${ev.ppl.toFixed(3)}`);
    }
    const out = {
      model: modelPath,
      sparsity: a.sparsity,
      pattern: pattern.kind === 'nm' ? `${pattern.n}:${pattern.m}` : 'unstructured',
      calibration: { mode, data: a.data ?? DEFAULT_CALIBRATION_DATA, nsamples: windows.length, seqlen: a.seqlen },
      eval: { data: 'brown:test', tokens: dense.tokens, seqlen: a.seqlen },
      dense: { ppl: dense.ppl, seconds: dense.seconds, tasks: dense.tasks },
      /** G is computed once on the dense model and shared by gblm and pruner-zero (not in their prune seconds). */
      gradientSeconds: G ? gradientSeconds : 0,
      methods: rows,
      metric: metric?.label ?? null,
      allocation: rowSpecs.some((r) => r.allocation.kind !== 'uniform') ? { owlM: owl.m, owlLambda: owl.lambda, ...(allocation.kind === 'expr' ? { expr: allocation.expr, name: allocationName(allocation) } : {}) } : null,
      seconds: (performance.now() - t0) / 1000,
    };
    if (a.json) {
      process.stdout.write(JSON.stringify(out) + '\n');
      return;
    }
    const lines = [
      `brown:test perplexity, ${out.pattern} at ${(100 * a.sparsity).toFixed(0)}% (${mode} calibration, ${windows.length} x ${a.seqlen} tokens of ${out.calibration.data}; ${dense.tokens} test tokens)`,
      '',
      `| method | perplexity | sparsity | prune s |${tasks.map((t) => ` ${t.name} acc | acc_norm |`).join('')}`,
      `| --- | ---: | ---: | ---: |${tasks.map(() => ' ---: | ---: |').join('')}`,
      `| dense | ${dense.ppl.toFixed(2)} | 0.00% | - |${taskCells(dense.tasks)}`,
      ...rows.map((r) => `| ${r.method} | ${r.ppl.toFixed(2)} | ${(100 * r.sparsity).toFixed(2)}% | ${r.pruneSeconds.toFixed(1)} |${taskCells(r.tasks)}`),
      ...(G ? ['', `G (gradients on the dense model, shared by gblm and pruner-zero): ${gradientSeconds.toFixed(1)} s, not included above`] : []),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  },
};
