/**
 * `symprune baselines`: the dense model and every baseline method pruned in the same
 * harness at one sparsity and pattern, with brown:test perplexity, so a discovered
 * metric has its yardsticks measured on the same model, data and machine. The work is
 * src/search/baseline-table.ts's; this parses the flags and prints the table.
 */
import { applyDeviceFlags, deviceFlags, type DeviceArgs } from '../device-flags.ts';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { loadTokens } from '../../data/dataset.ts';
import { resolveModel } from '../../model/load.ts';
import { openModelSource } from '../../model/source.ts';
import { baselineTable } from '../../search/baseline-table.ts';
import { progress } from '../progress.ts';
import { booleanFlag, checkSeqlen, choiceFlag, dataFlag, inputFileFlag, intFlag, modelFlag, numberFlag, stringFlag, threadsFlag } from '../validate.ts';
import { graphMaxPositions } from '../../onnx/max-positions.ts';
import { METHOD_NAMES, baselineMethod } from '../../prune/baselines.ts';
import { CALIBRATION_SEED, DEFAULT_CALIBRATION_DATA, calibrationShape, DEFAULT_NSAMPLES, DEFAULT_SEQLEN, checkWindowSpec, loadCalibrationWindows, modelVocabSize } from '../../prune/calibration-windows.ts';
import { parsePattern } from '../../prune/score.ts';
import { CALIBRATION_MODES, allocationFlags, allocationFromArgs, checkCalibrationMode, checkEvalTokens, metricFromArg } from './prune.ts';
import { OWL_DEFAULT_LAMBDA, OWL_DEFAULT_M, allocationName, type Allocation } from '../../prune/allocation.ts';
import type { TaskResult } from '../../eval/zero-shot.ts';
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
      .option('methods', stringFlag('methods', { describe: `comma-separated subset of ${METHOD_NAMES.join(',')}, each optionally NAME+owl, or NAME+alloc with --allocation EXPR|FILE (default: all, and ${OWL_ROWS.join(', ')} when unstructured, and wanda+alloc, metric+alloc with an expression)` }))
      .option('calibration', choiceFlag('calibration', CALIBRATION_MODES, { default: 'sequential', describe: 'one-shot or sequential' }))
      .option('data', dataFlag('data', { describe: `calibration data (default ${DEFAULT_CALIBRATION_DATA})` }))
      .option('nsamples', intFlag('nsamples', { min: 1, describe: `calibration windows (default ${DEFAULT_NSAMPLES}; with a 2-D .npy of samples: its rows)` }))
      .option('seqlen', intFlag('seqlen', { min: 2, describe: `tokens per window (calibration and evaluation) (default ${DEFAULT_SEQLEN}; with a 2-D .npy of samples: its row length)` }))
      .option('eval-tokens', intFlag('eval-tokens', { min: 2, describe: 'cap on evaluated brown:test tokens (at least one window of --seqlen)' }))
      .option('threads', threadsFlag())
      .option('json', booleanFlag('print one JSON object')) as never,
  handler: async (a) => {
    const { maxMemory } = applyDeviceFlags(a);
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
    const metricRows = a.metric !== undefined ? ['metric', ...(owlRows ? ['metric+owl'] : [])] : [];
    const exprRows = allocation.kind === 'expr' ? ['wanda+alloc', ...(a.metric !== undefined ? ['metric+alloc'] : [])] : [];
    const names = a.methods ? a.methods.split(',').map((s) => s.trim()).filter(Boolean) : [...METHOD_NAMES, ...(owlRows ? OWL_ROWS : []), ...metricRows, ...exprRows];
    const base = (n: string): string => n.replace(/\+(owl|alloc)$/, '');
    const metric = a.metric !== undefined ? metricFromArg(a.metric) : null;
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
    const source = await openModelSource(described);
    try {
      checkSeqlen('--seqlen', a.seqlen, graphMaxPositions(source.model));
      const vocabSize = modelVocabSize(source.model);
      const windows = await loadCalibrationWindows({ data: a.data, nsamples: a.nsamples, seqlen: a.seqlen, tokenizerPath, vocabSize, seed: CALIBRATION_SEED });
      const testTokens = await loadTokens('brown:test', { tokenizerPath, vocabSize });
      const log = (s: string) => {
        if (!a.json && process.stderr.isTTY) process.stderr.write(s + '\n');
      };
      let bar: ReturnType<typeof progress> | null = null;
      let at = '';
      const table = await baselineTable({
        source,
        rows: rowSpecs.map((r, i) => ({ ...r, method: methods[i]! })),
        sparsity: a.sparsity,
        pattern,
        calibration: mode,
        windows,
        testTokens,
        seqlen: a.seqlen,
        evalTokens: a['eval-tokens'],
        threads: a.threads,
        maxMemory,
        tasks: tok ? { tok, tasks } : undefined,
        onRow: (name, ppl) => log(`${name}: ppl ${ppl.toFixed(3)}`),
        onProgress: (row, stage, done, total) => {
          if (`${row} ${stage}` !== at) {
            bar?.done();
            at = `${row} ${stage}`;
            bar = progress(at, total);
          }
          bar!.update(done);
        },
      });
      (bar as ReturnType<typeof progress> | null)?.done();
      if (table.streamed && tok) process.stderr.write(`symprune: note: zero-shot tasks not scored: the model is over --max-memory and was run block by block\n`);
      const { dense, rows, gradientSeconds } = table;
      const out = {
        model: modelPath,
        sparsity: a.sparsity,
        pattern: pattern.kind === 'nm' ? `${pattern.n}:${pattern.m}` : 'unstructured',
        calibration: { mode, data: a.data ?? DEFAULT_CALIBRATION_DATA, nsamples: windows.length, seqlen: a.seqlen },
        eval: { data: 'brown:test', tokens: dense.tokens, seqlen: a.seqlen },
        dense: { ppl: dense.ppl, seconds: dense.seconds, tasks: dense.tasks },
        /** G is computed once on the dense model and shared by gblm and pruner-zero (not in their prune seconds). */
        gradientSeconds,
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
        ...(gradientSeconds > 0 ? ['', `G (gradients on the dense model, shared by gblm and pruner-zero): ${gradientSeconds.toFixed(1)} s, not included above`] : []),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    } finally {
      await source.close();
    }
  },
};
