/** `symprune report`: leaderboard, fitness curve and correlation analysis of a search database. */
import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { openDatabase } from '../../store/schema.ts';
import { booleanFlag, inputFileFlag, intFlag, makeDirs, outputFileFlag } from '../validate.ts';
import { buildReport, formatReport, reportJson, reportPng, reportSvg } from '../../store/report.ts';

interface Args {
  db: string;
  json?: boolean;
  plot?: string;
  run?: number;
  top: number;
}

export const reportCommand: CommandModule<object, Args> = {
  command: 'report',
  describe: 'leaderboard, fitness curve and correlation analysis of a search database',
  builder: (y) =>
    y
      .option('db', inputFileFlag('db', { demandOption: true, describe: 'search database (.sqlite)' }))
      .option('json', booleanFlag('print the report as JSON'))
      .option('plot', outputFileFlag('plot', { ext: /\.(svg|png)$/i, extName: 'a file name ending in .svg or .png', describe: 'write the best/median fitness curve to FILE.svg or FILE.png' }))
      .option('run', intFlag('run', { min: 1, describe: 'run id (default: the latest run in the file)' }))
      .option('top', intFlag('top', { min: 1, default: 10, describe: 'leaderboard length' })) as never,
  handler: (a) => {
    const db = openDatabase(a.db, { readonly: true });
    try {
      const r = buildReport(db, a.db, { run: a.run, top: a.top });
      if (a.plot) {
        try {
          makeDirs(dirname(resolve(a.plot)));
          writeFileSync(a.plot, /\.png$/i.test(a.plot) ? reportPng(r) : reportSvg(r));
        } catch (e) {
          throw new InputError(`--plot ${a.plot}: cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
        }
      }
      process.stdout.write(a.json ? reportJson(r) + '\n' : formatReport(r));
    } finally {
      db.close();
    }
  },
};
