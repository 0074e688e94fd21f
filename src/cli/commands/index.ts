/** Every subcommand, in the order `--help` lists them. */
import type { CommandModule } from 'yargs';
import { searchCommand } from './search.ts';
import { reportCommand } from './report.ts';
import { exportCommand } from './export.ts';
import { inspectCommand } from './inspect.ts';
import { evalCommand } from './eval.ts';
import { trainCommand } from './train.ts';
import { pruneCommand } from './prune.ts';
import { baselinesCommand } from './baselines.ts';
import { statsCommand } from './stats.ts';
import { tokenizerCommand } from './tokenizer.ts';
import { workerCommand } from './worker.ts';
import { dashboardCommand } from './dashboard.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [inspectCommand, evalCommand, trainCommand, tokenizerCommand, statsCommand, pruneCommand, baselinesCommand, searchCommand, workerCommand, reportCommand, exportCommand, dashboardCommand];
