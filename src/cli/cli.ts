/**
 * The `symprune` command line as a function: parse argv, run the command, and turn any
 * error into one `symprune: ...` line and an exit code (2 for bad input, 1 for an internal
 * error; SYMPRUNE_DEBUG=1 adds the stack). main.ts runs it for the process; tests run it
 * in a long-lived child to observe many command lines cheaply.
 */
import yargs from 'yargs';
import { InputError } from '../errors.ts';
import { commands } from './commands/index.ts';

async function parse(argv: string[]): Promise<void> {
  let cli = yargs(argv)
    .scriptName('symprune')
    .strict()
    .demandCommand(1, 'name a command; see --help')
    .recommendCommands()
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      // yargs' own complaints (unknown flag, missing value, a coerce that threw) are bad input.
      if (!err || err.name === 'YError') throw new InputError(err?.message ?? msg);
      throw err;
    });
  for (const c of commands) cli = cli.command(c);
  // yargs passes its instance as the second argument (the command's options are known by then).
  const switches = (_a: unknown, y: { getOptions(): { boolean: string[] } }): void => checkSwitches(argv, new Set(y.getOptions().boolean));
  cli = cli.middleware(switches as never, true);
  await cli.parseAsync();
}

/**
 * yargs reads `--json=maybe` as false without a word: a switch given a value other than
 * true or false is refused.
 */
function checkSwitches(argv: string[], switches: Set<string>): void {
  for (const tok of argv) {
    const m = /^--([^=]+)=(.*)$/s.exec(tok);
    if (m && switches.has(m[1]!) && !/^(true|false)$/i.test(m[2]!)) throw new InputError(`--${m[1]}=${m[2]}: a switch takes no value (give --${m[1]} or --no-${m[1]})`);
  }
}

/** File-system errors about a path the user gave: bad input, not a bug. */
const PATH_ERRORS = new Set(['ENOENT', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EEXIST', 'EROFS', 'ENAMETOOLONG', 'ELOOP', 'ENOTEMPTY']);

/** The one line and the exit code for an error that reached the top. */
export function describeError(e: unknown): { line: string; code: number } {
  const oneLine = (s: string): string => s.replace(/\s+/g, ' ').trim().slice(0, 1000);
  if (e instanceof InputError) return { line: `symprune: ${oneLine(e.message)}`, code: 2 };
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && PATH_ERRORS.has(err.code) && typeof err.path === 'string') {
    return { line: `symprune: ${err.path}: ${oneLine(err.message.replace(/^[A-Z]+: /, ''))}`, code: 2 };
  }
  const msg = err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(e);
  const hint = process.env.SYMPRUNE_DEBUG ? '' : ' (SYMPRUNE_DEBUG=1 shows the stack)';
  return { line: `symprune: internal error: ${oneLine(msg)}${hint}`, code: 1 };
}

/** Print an error as the CLI does; returns its exit code. */
export function reportError(e: unknown, stderr: (s: string) => void = (s) => process.stderr.write(s)): number {
  const { line, code } = describeError(e);
  stderr(line + '\n');
  if (process.env.SYMPRUNE_DEBUG && e instanceof Error && e.stack) stderr(e.stack + '\n');
  return code;
}

/** Run one command line; returns the exit code (a command may set process.exitCode, e.g. 130 when interrupted). */
export async function runCli(argv: string[]): Promise<number> {
  try {
    await parse(argv);
  } catch (e) {
    return reportError(e);
  }
  const c = process.exitCode;
  return typeof c === 'number' ? c : Number(c ?? 0) || 0;
}
