/** Drive test/support/cli-child.ts: one child per runner, command lines run one at a time. */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class CliRunner {
  private constructor(
    private readonly child: ChildProcess,
    /** What the child wrote to its real stderr (outside any command's capture). */
    readonly rawStderr: string[],
  ) {}

  /** Start a child whose working folder is `cwd`. */
  static async start(cwd: string, env: NodeJS.ProcessEnv = {}): Promise<CliRunner> {
    const child = fork(path.join(import.meta.dirname, 'cli-child.ts'), [], { cwd, execArgv: ['--import', import.meta.resolve('tsx')], env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const raw: string[] = [];
    child.stderr!.on('data', (d) => raw.push(String(d)));
    child.stdout!.on('data', (d) => raw.push(String(d)));
    await new Promise<void>((res, rej) => {
      child.once('message', () => res());
      child.once('exit', (c) => rej(new Error(`cli child exited with ${c}: ${raw.join('')}`)));
    });
    return new CliRunner(child, raw);
  }

  run(argv: string[]): Promise<CliResult> {
    return new Promise((res, rej) => {
      const onExit = (c: number | null): void => rej(new Error(`cli child died (exit ${c}) running ${JSON.stringify(argv)}: ${this.rawStderr.join('')}`));
      this.child.once('exit', onExit);
      this.child.once('message', (m) => {
        this.child.removeListener('exit', onExit);
        res(m as CliResult);
      });
      this.child.send({ argv });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    await new Promise((res) => {
      this.child.once('exit', res);
      this.child.kill();
    });
  }
}

/** The promise for bad input: exit 2 and exactly one `symprune:` line on stderr, matching `re`. */
export function assertRefusal(r: CliResult, argv: string[], re: RegExp): void {
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(r.code, 2, `${JSON.stringify(argv)}: exit ${r.code}: ${r.stderr}`);
  assert.equal(lines.length, 1, `${JSON.stringify(argv)}: ${r.stderr}`);
  assert.match(lines[0]!, /^symprune: /);
  assert.match(lines[0]!, re, JSON.stringify(argv));
}
