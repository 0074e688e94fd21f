/**
 * A long-lived child process that runs many symprune command lines through the real CLI
 * entry (src/cli/cli.ts, the function main.ts runs), so tests observe the real exit code,
 * stdout and stderr without starting node+tsx for every command line. Each request on the
 * IPC channel is { argv }, each reply { code, stdout, stderr }.
 */
import { runCli } from '../../src/cli/cli.ts';

type Write = typeof process.stdout.write;

async function runCaptured(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const ow = process.stdout.write;
  const ew = process.stderr.write;
  process.stdout.write = ((c: string | Uint8Array) => (out.push(String(c)), true)) as Write;
  process.stderr.write = ((c: string | Uint8Array) => (err.push(String(c)), true)) as Write;
  process.exitCode = undefined;
  let code: number;
  try {
    code = await runCli(argv);
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
    process.exitCode = undefined;
  }
  return { code, stdout: out.join(''), stderr: err.join('') };
}

process.on('message', (msg: { argv: string[] }) => {
  void runCaptured(msg.argv).then((r) => process.send!(r));
});
process.send!({ ready: true });
