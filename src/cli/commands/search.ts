/** `symprune search`: evolve pruning metrics on a model, logging everything to SQLite. */
import { resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { runSearch, faultFromEnv } from '../search-run.ts';
import { ALL_BASELINES, SEARCH_DEFAULTS, type SearchSettings } from '../search-settings.ts';

interface Args {
  model?: string;
  sparsity?: number;
  pattern?: string;
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
  json?: boolean;
}

const d = SEARCH_DEFAULTS;

export const searchCommand: CommandModule<object, Args> = {
  command: 'search',
  describe: 'evolve pruning metrics by genetic programming; every individual and evaluation goes to a SQLite file',
  builder: (y) =>
    y
      .option('model', { type: 'string', describe: 'model.onnx or a folder holding it (default: the bundled model)' })
      .option('sparsity', { type: 'number', describe: `fraction pruned, in (0, 1) (default ${d.sparsity})` })
      .option('pattern', { type: 'string', describe: `unstructured, 2:4 or 4:8 (default ${d.pattern})` })
      .option('population', { type: 'number', describe: `population size (default ${d.population})` })
      .option('iterations', { type: 'number', describe: `steady-state iterations, one child each (default ${d.iterations})` })
      .option('generations', { type: 'number', describe: 'generational mode: number of generations (instead of --iterations)' })
      .option('batch', { type: 'number', describe: 'children evaluated in parallel per step, fixed for the run (default: 2 x --workers)' })
      .option('workers', { type: 'number', describe: 'evaluation worker threads (default: one per core)' })
      .option('seed', { type: 'number', describe: `random seed (default ${d.seed})` })
      .option('db', { type: 'string', describe: 'search database (default runs/search-<date>.sqlite; required with --resume)' })
      .option('resume', { type: 'boolean', describe: 'continue the run in --db where it stopped' })
      .option('eval-tokens', { type: 'number', describe: `fitness tokens at the full budget (default ${d.evalTokens})` })
      .option('short-fraction', { type: 'number', describe: `short budget as a fraction of --eval-tokens (default ${d.shortFraction})` })
      .option('margin', { type: 'number', describe: `full budget only within this relative margin of the best short perplexity (default ${d.margin})` })
      .option('seqlen', { type: 'number', describe: `tokens per window (default ${d.seqlen})` })
      .option('data', { type: 'string', describe: `calibration data for X and G (default ${d.calibData})` })
      .option('nsamples', { type: 'number', describe: `calibration windows (default ${d.nsamples})` })
      .option('stats', { type: 'string', describe: 'safetensors file with L.G (and L.X) per layer, e.g. from `symprune stats` or computed elsewhere, instead of computing them' })
      .option('fitness-data', { type: 'string', describe: `data the perplexity fitness is measured on (default ${d.fitnessData})` })
      .option('seed-known', { type: 'boolean', describe: 'start the population with magnitude, Wanda, GBLM and Pruner-Zero metrics' })
      .option('baselines', { type: 'string', describe: `comma-separated baselines to evaluate once, or none (default ${ALL_BASELINES.join(',')})` })
      .option('task-timeout', { type: 'number', describe: 'seconds per worker task before it counts as timed out (default: 20x a dense evaluation, at least 60)' })
      .option('json', { type: 'boolean', describe: 'print one JSON line at the end' }) as never,
  handler: async (a) => {
    if (a.resume && !a.db) throw new InputError('--resume needs --db FILE (the database of the run to continue)');
    if (a.iterations !== undefined && a.generations !== undefined) throw new InputError('give either --iterations (steady-state) or --generations (generational), not both');
    const requested: Partial<SearchSettings> = {
      sparsity: a.sparsity,
      pattern: a.pattern,
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
      baselines: a.baselines === undefined ? undefined : a.baselines === 'none' || a.baselines === '' ? [] : a.baselines.split(',').map((s) => s.trim()),
    };
    for (const k of Object.keys(requested) as (keyof typeof requested)[]) if (requested[k] === undefined) delete requested[k];
    const db = a.db ?? `runs/search-${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}.sqlite`;
    const tty = process.stderr.isTTY === true;
    const sum = await runSearch({
      db,
      resume: !!a.resume,
      model: a.model,
      requested,
      workers: a.workers,
      taskTimeout: a['task-timeout'],
      log: (l) => {
        if (tty || !a.json) process.stderr.write(l + '\n');
      },
      showProgress: tty,
      fault: faultFromEnv(),
    });
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
          seconds: Number(sum.seconds.toFixed(2)),
        }) + '\n',
      );
    } else {
      const e = sum.evaluations;
      process.stdout.write(
        `run ${sum.run} ${sum.status}: best ${sum.best ? `${sum.best.infix} (perplexity ${sum.best.ppl.toFixed(3)})` : 'none yet'}; ` +
          `${sum.individuals} individuals, ${e.short} short + ${e.full} full perplexity runs, ${e.maskDuplicates} mask duplicates and ${e.reused} shared fitnesses not paid, ${e.failed} failed; ${sum.seconds.toFixed(1)} s\n` +
          `report: symprune report --db ${sum.db}\n`,
      );
    }
    if (sum.status === 'interrupted') process.exitCode = 130;
  },
};
