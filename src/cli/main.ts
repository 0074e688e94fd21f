/**
 * The `symprune` command. Each subcommand lives in its own file under ./commands and
 * exports a yargs CommandModule; this file only wires them together and maps errors
 * to exit codes (bad input: one line, exit 2).
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { InputError } from '../errors.ts';
import { commands } from './commands/index.ts';

export async function main(argv: string[]): Promise<void> {
  let cli = yargs(argv)
    .scriptName('symprune')
    .strict()
    .demandCommand(1, 'name a command; see --help')
    .recommendCommands()
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      throw err ?? new InputError(msg);
    });
  for (const c of commands) cli = cli.command(c);
  await cli.parseAsync();
}

try {
  await main(hideBin(process.argv));
} catch (e) {
  if (e instanceof InputError) {
    process.stderr.write(`symprune: ${e.message}\n`);
    process.exitCode = 2;
  } else {
    throw e;
  }
}
