/** `symprune export`: write a metric found by a search in a format `symprune prune --metric` (or a paper) reads. */
import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { openDatabase } from '../../store/schema.ts';
import { booleanFlag, choiceFlag, inputFileFlag, intFlag, makeDirs, outputFileFlag } from '../validate.ts';
import { exportMetric, exportPareto, EXPORT_FORMATS, type ExportFormat } from '../../store/export.ts';

interface Args {
  db: string;
  rank: number;
  run?: number;
  format?: ExportFormat;
  out: string;
  pareto?: boolean;
  json?: boolean;
}

export const exportCommand: CommandModule<object, Args> = {
  command: 'export',
  describe: 'write the best (or K-th best) metric of a search as JSON, Pruner-Zero JSON, infix or LaTeX',
  builder: (y) =>
    y
      .option('db', inputFileFlag('db', { demandOption: true, describe: 'search database (.sqlite)' }))
      .option('rank', intFlag('rank', { min: 1, default: 1, describe: 'leaderboard rank to export (1 = best)' }))
      .option('run', intFlag('run', { min: 1, describe: 'run id (default: the latest run in the file)' }))
      .option('format', choiceFlag('format', EXPORT_FORMATS, { describe: 'json and pruner-zero and infix feed `symprune prune --metric`; latex is for papers (needed unless --pareto)' }))
      .option('pareto', booleanFlag('write the Pareto front (best perplexity per tree size) instead: --out FILE.json, .csv, .svg or .png'))
      .option('out', outputFileFlag('out', { demandOption: true, describe: 'output file' }))
      .option('json', booleanFlag('print a JSON summary line')) as never,
  handler: (a) => {
    if (resolve(a.out) === resolve(a.db)) throw new InputError(`--out ${a.out}: would overwrite the database`);
    if (a.pareto) return writePareto(a);
    if (a.format === undefined) throw new InputError('give --format json|pruner-zero|infix|latex (or --pareto)');
    const format = a.format;
    const db = openDatabase(a.db, { readonly: true });
    let result;
    try {
      result = exportMetric(db, a.db, { rank: a.rank, run: a.run, format });
    } finally {
      db.close();
    }
    try {
      makeDirs(dirname(resolve(a.out)));
      writeFileSync(a.out, result.text);
    } catch (e) {
      throw new InputError(`--out ${a.out}: cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    const summary = { out: a.out, format: a.format, run: result.run, rank: a.rank, id: result.individual.id, infix: result.individual.infix, ppl: result.individual.fullPpl ?? result.individual.fitness };
    process.stdout.write(a.json ? JSON.stringify(summary) + '\n' : `wrote ${a.out}: rank ${a.rank} of run ${result.run}, ${summary.infix} (perplexity ${summary.ppl.toFixed(3)})\n`);
  },
};

/** export --pareto: the front as data or a plot, by the extension of --out. */
function writePareto(a: Args): void {
  if (!/\.(json|csv|svg|png)$/i.test(a.out)) throw new InputError(`--out ${a.out}: with --pareto, expected a file name ending in .json, .csv, .svg or .png`);
  const db = openDatabase(a.db, { readonly: true });
  let r;
  try {
    r = exportPareto(db, a.db, { run: a.run, out: a.out });
  } finally {
    db.close();
  }
  try {
    makeDirs(dirname(resolve(a.out)));
    writeFileSync(a.out, r.data);
  } catch (e) {
    throw new InputError(`--out ${a.out}: cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const summary = { out: a.out, run: r.run, points: r.points.length, sizes: r.points.map((p) => p.size) };
  process.stdout.write(a.json ? JSON.stringify(summary) + '\n' : `wrote ${a.out}: Pareto front of run ${r.run}, ${r.points.length} points (sizes ${summary.sizes.join(', ')})\n`);
}
