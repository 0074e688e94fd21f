/** `symprune search`: evolve pruning metrics on a model, logging everything to SQLite. */
import { resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { applyDeviceFlags, deviceFlags, type DeviceArgs } from '../device-flags.ts';
import { InputError } from '../../errors.ts';
import { METHOD_NAMES } from '../../prune/baselines.ts';
import { runSearch, storedModel, type RequestedSettings, type SearchProgress } from '../../search/run.ts';
import { queueRunner, type Fault } from '../../search/runners.ts';
import { SEARCH_DEFAULTS, crossSettings, parseSettingsList, settingsFields, splitList, type SearchSettings, type Setting, type SettingNames } from '../../search/settings.ts';
import { resolveModel } from '../../model/load.ts';
import { progress, type Progress } from '../progress.ts';
import { calibrationShape } from '../../prune/calibration-windows.ts';
import { booleanFlag, checkOutputFile, choiceFlag, checkWorkers, dataFlag, inputFileFlag, intFlag, modelFlag, numberFlag, numberListFlag, outputFileFlag, stringFlag } from '../validate.ts';
import { allocationArg, allocationFlags, metricFromArg } from './prune.ts';
import { OWL_DEFAULT_LAMBDA, OWL_DEFAULT_M } from '../../prune/allocation.ts';
import { ALLOCATION_TERMINALS, BINARY_OPS, TERMINALS, UNARY_OPS, isBinary, isTerminal, isUnary, toInfix, type BinaryOp, type Terminal, type UnaryOp } from '../../search-space/index.ts';
import type { GpOptions } from '../../search/settings.ts';

interface Args extends DeviceArgs {
  model?: string;
  tokenizer?: string;
  sparsity?: number[];
  pattern?: string;
  settings?: string;
  population?: number;
  iterations?: number;
  generations?: number;
  batch?: number;
  workers?: number;
  seed?: number;
  db?: string;
  resume?: boolean;
  'eval-tokens'?: number;
  'short-fraction'?: number;
  margin?: number;
  seqlen?: number;
  data?: string;
  nsamples?: number;
  stats?: string;
  'fitness-data'?: string;
  'seed-known'?: boolean;
  baselines?: string;
  'task-timeout'?: number;
  queue?: string;
  json?: boolean;
  allocation?: string;
  'max-depth'?: number;
  'max-size'?: number;
  operators?: string;
  terminals?: string;
  'owl-m'?: number;
  'owl-lambda'?: number;
  evolve?: string;
  metric?: string;
}

const d = SEARCH_DEFAULTS;

/** Errors name settings by the flag that sets them. */
const FLAGS: SettingNames = {
  modelSha256: '--model',
  sparsity: '--sparsity',
  pattern: '--pattern',
  settings: '--settings',
  mode: 'the mode (--iterations or --generations)',
  population: '--population',
  batch: '--batch',
  iterations: '--iterations',
  generations: '--generations',
  seed: '--seed',
  fitnessData: '--fitness-data',
  evalTokens: '--eval-tokens',
  shortFraction: '--short-fraction',
  margin: '--margin',
  seqlen: '--seqlen',
  calibData: '--data',
  nsamples: '--nsamples',
  stats: '--stats',
  seedKnown: '--seed-known',
  baselines: '--baselines',
  gp: 'the GP options',
  allocation: '--allocation',
  evolveAllocation: '--evolve allocation',
  resume: '--resume',
  db: '--db',
  workers: '--workers',
  taskTimeout: '--task-timeout',
};

/** SYMPRUNE_WORKER_FAULT (testing hook): `crash@N`, `hang@N` or `overtime@N`, N = the N-th perplexity task. */
export function faultFromEnv(v = process.env.SYMPRUNE_WORKER_FAULT): Fault | null {
  if (!v) return null;
  const m = /^(crash|hang|overtime)@(\d+)$/.exec(v);
  if (!m) throw new InputError(`SYMPRUNE_WORKER_FAULT=${v}: expected crash@N, hang@N or overtime@N`);
  return { kind: m[1] as Fault['kind'], at: Number(m[2]) };
}

/** SIGINT/SIGTERM stop after the current step; a second SIGINT marks the run interrupted and exits. */
function signalsToAbort(log: (l: string) => void): { signal: AbortSignal; stopNow: AbortSignal; dispose: () => void } {
  const stop = new AbortController();
  const now = new AbortController();
  const hard = (): void => {
    now.abort();
    process.exit(130);
  };
  const soft = (): void => {
    stop.abort();
    log('stopping after the current step (interrupt again to stop at once)');
    process.once('SIGINT', hard);
  };
  process.once('SIGINT', soft);
  process.once('SIGTERM', soft);
  return {
    signal: stop.signal,
    stopNow: now.signal,
    dispose: () => {
      process.removeListener('SIGINT', soft);
      process.removeListener('SIGTERM', soft);
      process.removeListener('SIGINT', hard);
    },
  };
}

/** Progress bars on a TTY: the statistics, then the search steps. */
function progressDrawer(): (p: SearchProgress) => void {
  const bars: Partial<Record<string, Progress>> = {};
  return (p) => {
    if (p.kind === 'statistics') {
      const bar = (bars[p.stage] ??= progress(p.stage === 'G' ? 'gradient statistics G' : 'activation statistics X', p.total));
      bar.update(p.done);
      if (p.done >= p.total) bar.done();
      return;
    }
    const bar = (bars.step ??= progress('search step', p.total));
    bar.update(p.done, `| best ${p.best !== null ? p.best.toFixed(3) : '-'} | ${p.paid.short} ${p.settings > 1 ? `short-budget perplexities (${p.settings} per candidate)` : 'candidates evaluated'} (${p.perMinute.toFixed(1)}/min), ${p.paid.full} at full budget, ${p.maskDuplicates} equal masks skipped`);
    if (p.done >= p.total) bar.done();
  };
}

export const searchCommand: CommandModule<object, Args> = {
  command: 'search',
  describe: 'evolve pruning metrics by genetic programming; every individual and evaluation goes to a SQLite file',
  builder: (y) =>
    allocationFlags(deviceFlags(y, true))
      .option('model', modelFlag())
      .option('tokenizer', inputFileFlag('tokenizer', { describe: 'tokenizer.json for text data (default: the one beside the model)' }))
      .option('sparsity', numberListFlag('sparsity', { min: 0, max: 1, minExclusive: true, maxExclusive: true, describe: `fraction pruned, in (0, 1), or a comma-separated list (0.5,0.7: fitness over every setting) (default ${d.sparsity})` }))
      .option('pattern', stringFlag('pattern', { describe: `unstructured, 2:4 or 4:8, or a comma-separated list; with --sparsity a list, every pair is a setting, an N:M pattern once at its own 50% (default ${d.pattern})` }))
      .option('settings', stringFlag('settings', { describe: 'explicit settings instead of --sparsity/--pattern: comma-separated SPARSITY, SPARSITY:PATTERN or N:M (0.5,0.7:unstructured,2:4)' }))
      .option('population', intFlag('population', { min: 2, describe: `population size (default ${d.population})` }))
      .option('iterations', intFlag('iterations', { min: 0, describe: `steady-state iterations, one child each (default ${d.iterations})` }))
      .option('generations', intFlag('generations', { min: 0, describe: 'generational mode: number of generations (instead of --iterations)' }))
      .option('batch', intFlag('batch', { min: 1, describe: 'children evaluated in parallel per step, fixed for the run (default: 2 x --workers)' }))
      .option('workers', intFlag('workers', { min: 1, describe: 'evaluation worker threads, at most one per core (default: one per core; none with --queue)' }))
      .option('seed', intFlag('seed', { min: 0, describe: `random seed (default ${d.seed})` }))
      .option('db', outputFileFlag('db', { describe: 'search database (default runs/search-<date>.sqlite; required with --resume)' }))
      .option('resume', booleanFlag('continue the run in --db where it stopped'))
      .option('eval-tokens', intFlag('eval-tokens', { min: 2, describe: `fitness tokens at the full budget (default ${d.evalTokens})` }))
      .option('short-fraction', numberFlag('short-fraction', { min: 0, max: 1, minExclusive: true, describe: `short budget as a fraction of --eval-tokens (default ${d.shortFraction})` }))
      .option('margin', numberFlag('margin', { min: 0, describe: `full budget only within this relative margin of the best short perplexity (default ${d.margin})` }))
      .option('seqlen', intFlag('seqlen', { min: 2, describe: `tokens per window (default ${d.seqlen})` }))
      .option('data', dataFlag('data', { describe: `calibration data for X and G (default ${d.calibData})` }))
      .option('nsamples', intFlag('nsamples', { min: 1, describe: `calibration windows (default ${d.nsamples})` }))
      .option('stats', inputFileFlag('stats', { describe: 'safetensors file with L.G (and L.X) per layer, e.g. from `symprune stats` or computed elsewhere, instead of computing them' }))
      .option('fitness-data', dataFlag('fitness-data', { describe: `data the perplexity fitness is measured on (default ${d.fitnessData})` }))
      .option('seed-known', booleanFlag("start the population with magnitude, Wanda, GBLM and Pruner-Zero metrics (with --evolve allocation: OWL's, mms(R))"))
      .option('evolve', choiceFlag('evolve', ['metric', 'allocation'], { describe: 'what the search evolves: the metric (default), or the layer-wise allocation of --metric (expressions over the per-block R, A, M, D)' }))
      .option('metric', stringFlag('metric', { describe: 'with --evolve allocation: the fixed metric (a file, e.g. from `symprune export`, or an infix expression)' }))
      .option('baselines', stringFlag('baselines', { describe: `comma-separated baselines to evaluate once, or none (default ${METHOD_NAMES.join(',')})` }))
      .option('max-depth', intFlag('max-depth', { min: 1, describe: 'deepest tree allowed (default 8)' }))
      .option('max-size', intFlag('max-size', { min: 1, describe: 'most nodes in a tree (default 32)' }))
      .option('operators', stringFlag('operators', { describe: `comma-separated operators the trees may use (default all: ${[...UNARY_OPS, ...BINARY_OPS].join(',')})` }))
      .option('terminals', stringFlag('terminals', { describe: `comma-separated terminals (default ${TERMINALS.join(',')}; with --evolve allocation ${ALLOCATION_TERMINALS.join(',')})` }))
      .option('task-timeout', numberFlag('task-timeout', { min: 0, minExclusive: true, describe: 'seconds per worker task before it counts as timed out (default: 20x a dense evaluation, at least 60)' }))
      .option('queue', stringFlag('queue', { describe: 'send evaluations to `symprune worker` processes through this job queue (redis://HOST:PORT); local threads then run only --workers N' }))
      .option('json', booleanFlag('print one JSON line at the end')) as never,
  handler: async (a) => {
    const { maxMemory } = applyDeviceFlags(a);
    if (a.resume && !a.db) throw new InputError('--resume needs --db FILE (the database of the run to continue)');
    if (a.iterations !== undefined && a.generations !== undefined) throw new InputError('give either --iterations (steady-state) or --generations (generational), not both');
    // A 2-D .npy of calibration samples [n, seqlen] gives the defaults of --nsamples and --seqlen.
    const cal = calibrationShape({ data: a.data, nsamples: a.nsamples, seqlen: a.seqlen });
    if (cal.samples) ({ nsamples: a.nsamples, seqlen: a.seqlen } = cal);
    const requested: RequestedSettings = {
      ...settingsFromFlags(a),
      population: a.population,
      iterations: a.iterations,
      generations: a.generations,
      mode: a.generations !== undefined ? 'generational' : a.iterations !== undefined ? 'steady-state' : undefined,
      batch: a.batch,
      seed: a.seed,
      evalTokens: a['eval-tokens'],
      shortFraction: a['short-fraction'],
      margin: a.margin,
      seqlen: a.seqlen,
      calibData: a.data,
      nsamples: a.nsamples,
      stats: a.stats === undefined ? undefined : resolve(a.stats),
      fitnessData: a['fitness-data'],
      seedKnown: a['seed-known'],
      allocation: a.allocation === undefined || a.allocation === 'uniform' ? undefined : allocationArg(a),
      evolveAllocation: allocationSearchFromFlags(a),
      baselines: a.baselines === undefined ? undefined : a.baselines === 'none' ? [] : a.baselines.split(',').map((s) => s.trim()),
    };
    for (const k of Object.keys(requested) as (keyof typeof requested)[]) if (requested[k] === undefined) delete requested[k];
    const db = a.db ?? `runs/search-${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}.sqlite`;
    if (a.db === undefined) checkOutputFile('--db', db);
    const tty = process.stderr.isTTY === true;
    const log = (l: string): void => {
      if (tty || !a.json) process.stderr.write(l + '\n');
    };
    checkWorkers(a.workers);
    // The model: the flag, else (resume) the run's, else the bundled one.
    const model = a.model !== undefined || !a.resume ? resolveModel(a.model, a.tokenizer) : (storedModel(db) ?? resolveModel(undefined));
    const signals = signalsToAbort(log);
    let sum;
    try {
      sum = await runSearch({
        db,
        resume: !!a.resume,
        model,
        settings: requested,
        workers: a.workers,
        maxMemory,
        runner: a.queue !== undefined ? queueRunner(a.queue, { localThreads: a.workers, flag: '--queue' }) : undefined,
        taskTimeout: a['task-timeout'],
        signal: signals.signal,
        stopNow: signals.stopNow,
        log,
        onProgress: tty ? progressDrawer() : undefined,
        names: FLAGS,
        gp: gpOptionsFromFlags(a),
        fault: faultFromEnv(),
      });
    } finally {
      signals.dispose();
    }
    if (a.json) {
      process.stdout.write(
        JSON.stringify({
          run: sum.run,
          db: sum.db,
          status: sum.status,
          best: sum.best?.infix ?? null,
          ppl: sum.best?.ppl ?? null,
          fidelity: sum.best?.fidelity ?? null,
          individuals: sum.individuals,
          evaluations: sum.evaluations,
          ...(sum.settings.length > 1 ? { settings: sum.settings } : {}),
          seconds: Number(sum.seconds.toFixed(2)),
        }) + '\n',
      );
    } else {
      const e = sum.evaluations;
      process.stdout.write(
        `run ${sum.run} ${sum.status}: best ${sum.best ? `${sum.best.infix} (${sum.settings.length > 1 ? `geometric mean perplexity over ${sum.settings.join(', ')}` : 'perplexity'} ${sum.best.ppl.toFixed(3)})` : 'none yet'}; ` +
          `${sum.individuals} individuals, ${e.short} short + ${e.full} full perplexity runs, ${e.maskDuplicates} mask duplicates and ${e.reused} shared fitnesses not paid, ${e.failed} failed; ${sum.seconds.toFixed(1)} s\n` +
          `report: symprune report --db ${sum.db}\n`,
      );
    }
    if (sum.status === 'interrupted') process.exitCode = 130;
  },
};

/**
 * The settings from --settings, or --sparsity × --pattern. One setting: only the flags given
 * (a resumed run compares just those), and `settings: null` so a resumed run of several
 * settings refuses it; several: the whole list (see settingsFields).
 */
export function settingsFromFlags(a: { sparsity?: number[]; pattern?: string; settings?: string }): Partial<Pick<SearchSettings, 'sparsity' | 'pattern'>> & { settings?: Setting[] | null } {
  let list: Setting[];
  if (a.settings !== undefined) {
    if (a.sparsity !== undefined || a.pattern !== undefined) throw new InputError('give --settings, or --sparsity and --pattern, not both');
    list = parseSettingsList(a.settings, '--settings');
  } else if (a.sparsity !== undefined || a.pattern !== undefined) {
    list = crossSettings(a.sparsity ?? [d.sparsity], a.pattern !== undefined ? splitList(a.pattern, '--pattern') : [d.pattern], FLAGS);
  } else return {};
  if (list.length > 1) return settingsFields(list);
  const one = list[0]!;
  return { ...(a.sparsity !== undefined || a.settings !== undefined ? { sparsity: one.sparsity } : {}), ...(a.pattern !== undefined || a.settings !== undefined ? { pattern: one.pattern } : {}), settings: null };
}

/** --evolve allocation with --metric (and --owl-m, --owl-lambda); undefined when the metric is evolved. */
export function allocationSearchFromFlags(a: { evolve?: string; metric?: string; 'owl-m'?: number; 'owl-lambda'?: number }): SearchSettings['evolveAllocation'] {
  if (a.evolve !== 'allocation') {
    if (a.metric !== undefined) throw new InputError('--metric: a fixed metric goes with --evolve allocation');
    return undefined;
  }
  if (a.metric === undefined) throw new InputError('--evolve allocation needs --metric FILE|EXPR (the metric whose allocation is evolved)');
  const tree = metricFromArg(a.metric).tree;
  if (!tree) throw new InputError(`--metric ${a.metric}: not a metric expression`);
  return { metric: toInfix(tree), m: a['owl-m'] ?? OWL_DEFAULT_M, lambda: a['owl-lambda'] ?? OWL_DEFAULT_LAMBDA };
}

/** The search space from --max-depth, --max-size, --operators, --terminals (undefined: the defaults). */
export function gpOptionsFromFlags(a: { 'max-depth'?: number; 'max-size'?: number; operators?: string; terminals?: string }): GpOptions | undefined {
  const gp: GpOptions = {};
  const int = (v: number | undefined, flag: string, min: number): number | undefined => {
    if (v !== undefined && !(Number.isInteger(v) && v >= min)) throw new InputError(`${flag} ${v}: must be an integer of at least ${min}`);
    return v;
  };
  const list = (v: string, flag: string): string[] => {
    const xs = v.split(',').map((x) => x.trim()).filter(Boolean);
    if (xs.length === 0) throw new InputError(`${flag}: empty list`);
    return xs;
  };
  if (a['max-depth'] !== undefined) gp.maxDepth = int(a['max-depth'], '--max-depth', 1);
  if (a['max-size'] !== undefined) gp.maxSize = int(a['max-size'], '--max-size', 1);
  if (a.terminals !== undefined) {
    const ts = list(a.terminals, '--terminals');
    const bad = ts.find((t) => !isTerminal(t));
    if (bad) throw new InputError(`--terminals: unknown terminal ${bad}; expected some of ${TERMINALS.join(', ')} (or ${ALLOCATION_TERMINALS.join(', ')} with --evolve allocation)`);
    gp.terminals = ts as Terminal[];
  }
  if (a.operators !== undefined) {
    const ops = list(a.operators, '--operators');
    const bad = ops.find((o) => !isUnary(o) && !isBinary(o));
    if (bad) throw new InputError(`--operators: unknown operator ${bad}; expected some of ${[...UNARY_OPS, ...BINARY_OPS].join(', ')}`);
    gp.unaryOps = ops.filter(isUnary) as UnaryOp[];
    gp.binaryOps = ops.filter(isBinary) as BinaryOp[];
  }
  return Object.keys(gp).length ? gp : undefined;
}
