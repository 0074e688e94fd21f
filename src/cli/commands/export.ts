/** `symprune export`: write a metric found by a search in a format `symprune prune --metric` (or a paper) reads. */
import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { openDatabase } from '../../store/schema.ts';
import { booleanFlag, choiceFlag, inputFileFlag, intFlag, makeDirs, outputFileFlag } from '../validate.ts';
import { exportMetric, EXPORT_FORMATS, type ExportFormat } from '../../store/export.ts';

interface Args {
  db: string;
  rank: number;
  run?: number;
  format: ExportFormat;
  out: string;
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
      .option('format', choiceFlag('format', EXPORT_FORMATS, { demandOption: true, describe: 'json and pruner-zero and infix feed `symprune prune --metric`; latex is for papers' }))
      .option('out', outputFileFlag('out', { demandOption: true, describe: 'output file' }))
      .option('json', booleanFlag('print a JSON summary line')) as never,
  handler: (a) => {
    if (resolve(a.out) === resolve(a.db)) throw new InputError(`--out ${a.out}: would overwrite the database`);
    const db = openDatabase(a.db, { readonly: true });
    let result;
    try {
      result = exportMetric(db, a.db, { rank: a.rank, run: a.run, format: a.format });
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
