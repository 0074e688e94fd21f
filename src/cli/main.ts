/**
 * The `symprune` process: runs the command line (./cli.ts) and is the last resort for
 * errors: anything that escapes, even from a callback or a rejected promise nobody
 * awaited, ends as one `symprune: ...` line (exit 2 for bad input, 1 for a bug), with the
 * stack only under SYMPRUNE_DEBUG=1.
 */
import { hideBin } from 'yargs/helpers';
import { reportError, runCli } from './cli.ts';

const lastResort = (e: unknown): void => {
  process.exit(reportError(e));
};
process.on('uncaughtException', lastResort);
process.on('unhandledRejection', lastResort);

process.exitCode = await runCli(hideBin(process.argv));
