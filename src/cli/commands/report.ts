/** `symprune report`: leaderboard, fitness curve and correlation analysis of a search database. */
import { writeFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { openDatabase } from '../../store/schema.ts';
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
      .option('db', { type: 'string', demandOption: true, describe: 'search database (.sqlite)' })
      .option('json', { type: 'boolean', describe: 'print the report as JSON' })
      .option('plot', { type: 'string', describe: 'write the best/median fitness curve to FILE.svg or FILE.png' })
      .option('run', { type: 'number', describe: 'run id (default: the latest run in the file)' })
      .option('top', { type: 'number', default: 10, describe: 'leaderboard length' }) as never,
  handler: (a) => {
    if (a.plot !== undefined && !/\.(svg|png)$/i.test(a.plot)) throw new InputError(`--plot ${a.plot}: expected a file name ending in .svg or .png`);
    if (!Number.isInteger(a.top) || a.top < 1) throw new InputError(`--top must be a positive integer, got ${a.top}`);
    const db = openDatabase(a.db, { readonly: true });
    try {
      const r = buildReport(db, a.db, { run: a.run, top: a.top });
      if (a.plot) {
        try {
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
