/** Every subcommand, in the order `--help` lists them. */
import type { CommandModule } from 'yargs';
import { searchCommand } from './search.ts';
import { reportCommand } from './report.ts';
import { exportCommand } from './export.ts';
import { inspectCommand } from './inspect.ts';
import { evalCommand } from './eval.ts';
import { trainCommand } from './train.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [inspectCommand, evalCommand, trainCommand, searchCommand, reportCommand, exportCommand];
