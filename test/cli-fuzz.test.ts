/**
 * Fuzz the command line: for every flag of every command, read from the commands' own
 * definitions (their validate.ts kind), generated bad values of every sort (types, ranges,
 * repeated or missing values, paths of every kind) must each end in exit 2 with one
 * `symprune:` line naming the flag, and leave the file system as it was.
 *
 * The command lines run through the real CLI entry in one long-lived child process
 * (test/support/cli-child.ts), so a thousand of them take seconds.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CommandModule } from 'yargs';
import { commands } from '../src/cli/commands/index.ts';
import { FLAG_KIND, type FlagKind } from '../src/cli/validate.ts';
import { CliRunner, assertRefusal } from './support/cli-runner.ts';
import { snapshot } from './support/fs-snapshot.ts';

interface Flag {
  name: string;
  kind: FlagKind | undefined;
}
interface Command {
  path: string[];
  flags: Flag[];
}

/** Run a command's builder against a recorder to list its flags (and subcommands). */
function listCommands(mods: readonly CommandModule[], prefix: string[] = []): Command[] {
  const out: Command[] = [];
  for (const m of mods) {
    const name = String(m.command).split(' ')[0]!;
    const flags: Flag[] = [];
    const subs: CommandModule[] = [];
    const recorder: unknown = new Proxy(
      {},
      {
        get: (_t, prop) => {
          if (prop === 'option' || prop === 'options')
            return (n: string, o: Record<string | symbol, unknown>) => (flags.push({ name: n, kind: o[FLAG_KIND] as FlagKind | undefined }), recorder);
          if (prop === 'command') return (c: CommandModule) => (subs.push(c), recorder);
          return () => recorder;
        },
      },
    );
    if (typeof m.builder === 'function') (m.builder as (y: unknown) => unknown)(recorder);
    if (subs.length) out.push(...listCommands(subs, [...prefix, name]));
    else out.push({ path: [...prefix, name], flags });
  }
  return out;
}

const SAMPLE_NAMES = ['x.safetensors', 'x.svg', 'x.sqlite', 'x.json', 'x.txt', 'x.onnx'];

/** Bad values for a kind of flag; each is the argv tail after the flag name (empty: the flag with no value). */
function badValues(flag: string, k: FlagKind): string[][] {
  const twice = (v: string): string[] => [v, `--${flag}`, v];
  switch (k.kind) {
    case 'int': {
      const ok = String(k.min);
      const v = ['abc', '', ' ', '1.5', '1e3', '0x10', 'NaN', 'Infinity', '-Infinity', String(k.min - 1), '99999999999999999999'];
      if (k.max !== undefined) v.push(String(k.max + 1));
      return [...v.map((x) => [x]), [], twice(ok)];
    }
    case 'number': {
      const lo = k.min === undefined ? null : k.minExclusive ? k.min : k.min - 0.5;
      const hi = k.max === undefined ? null : k.maxExclusive ? k.max : k.max + 0.5;
      const ok = String(k.min !== undefined && k.max !== undefined ? (k.min + k.max) / 2 : (k.min ?? 0) + 1);
      const v = ['abc', '', 'NaN', 'Infinity', '-Infinity', '1e999', '0x1', '1,5'];
      if (lo !== null) v.push(String(lo));
      if (hi !== null) v.push(String(hi));
      return [...v.map((x) => [x]), [], twice(ok)];
    }
    case 'string':
      return [[''], ['   '], [], twice('x')];
    case 'choice':
      return [[''], ['bogus'], [k.choices[0]!.toUpperCase() + '!'], [], twice(k.choices[0]!)];
    case 'input-dirs':
      return [[''], ['missing-dir'], ['afile'], ['adir', 'afile'], []];
    case 'input-files':
      return [[''], ['missing.file'], ['adir'], ['afile', 'missing.file'], ['/dev/null'], []];
    case 'input-file':
      return [[''], ['missing.file'], ['adir'], ['/dev/null'], ['/proc/nonexistent/x'], ['afile/sub'], [], twice('afile')];
    case 'output-file': {
      const name = SAMPLE_NAMES.find((n) => !k.ext || k.ext.test(n)) ?? 'x.out';
      const v = [[''], ['adir'], [`afile/${name}`], [`/proc/x/${name}`], [`/proc/${name}`], ['/dev/null'], [`newdir/${name}/`], [], twice(name)];
      if (k.ext) v.push(['x.wrongext']);
      return v;
    }
    case 'output-dir':
      return [[''], ['afile'], ['afile/sub'], ['/proc/x'], ['/proc/x/y'], ['/dev/null'], [], twice('newdir')];
    case 'model':
      return [[''], ['missing-model'], ['missing/model.onnx'], [], twice('afile')];
    case 'data':
      return [[''], ['unknown-spec'], ['x.csv'], [], twice('brown:test')];
    case 'boolean':
      return [['=maybe'], ['=1'], ['=']];
  }
}

let dir = '';
let runner: CliRunner;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-fuzz-'));
  fs.writeFileSync(path.join(dir, 'afile'), 'some text\n');
  fs.mkdirSync(path.join(dir, 'adir'));
  fs.writeFileSync(path.join(dir, 'adir', 'inside.txt'), 'x\n');
  runner = await CliRunner.start(dir);
});

after(async () => {
  await runner?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('every flag of every command has a kind the validation layer checks', () => {
  const cmds = listCommands(commands);
  assert.ok(cmds.length >= 10, cmds.map((c) => c.path.join(' ')).join(', '));
  const untagged = cmds.filter((c) => c.path[0] !== 'dashboard').flatMap((c) => c.flags.filter((f) => !f.kind).map((f) => `${c.path.join(' ')} --${f.name}`));
  assert.deepEqual(untagged, []);
});

test('generated bad values for every flag: exit 2, one symprune: line naming the flag, nothing written', { timeout: 120_000 }, async (t) => {
  const before = snapshot(dir);
  let cases = 0;
  const failures: string[] = [];
  for (const c of listCommands(commands)) {
    if (c.path[0] === 'dashboard') continue; // a server: its own cases below
    for (const f of c.flags) {
      for (const tail of badValues(f.name, f.kind!)) {
        // A switch's bad values are glued to it (--json=maybe); other flags take theirs as the next words.
        const argv = tail[0]?.startsWith('=') ? [...c.path, `--${f.name}${tail[0]}`] : [...c.path, `--${f.name}`, ...tail];
        const r = await runner.run(argv);
        cases++;
        const lines = r.stderr.split('\n').filter(Boolean);
        const why =
          r.code !== 2 ? `exit ${r.code}` : lines.length !== 1 ? `${lines.length} stderr lines` : !/^symprune: /.test(lines[0]!) ? 'no symprune: prefix' : !lines[0]!.includes(f.name) && !lines[0]!.includes('model not found') ? 'the line does not name the flag' : r.stdout !== '' ? 'stdout written' : null;
        if (why) failures.push(`${JSON.stringify(argv)}: ${why}: ${r.stderr.trim()}`);
        const now = snapshot(dir);
        if (now !== before) {
          failures.push(`${JSON.stringify(argv)}: changed the file system:\n${now}`);
          break;
        }
      }
    }
  }
  t.diagnostic(`${cases} command lines`);
  assert.ok(cases > 500, `${cases} cases`);
  assert.deepEqual(failures, []);
  assert.equal(runner.rawStderr.join(''), '', 'nothing written outside the commands');
});

test('commands checked in their handlers: exit 2, one line, nothing written', { timeout: 120_000 }, async () => {
  const before = snapshot(dir);
  const cases: Array<[string[], RegExp]> = [
    [['inspect', '--model', 'adir'], /holds no model/],
    [['inspect', '--model', 'afile'], /not an ONNX model/],
    [['eval', '--model', 'afile'], /not an ONNX model/],
    [['prune', '--out', 'pout'], /exactly one of --metric/],
    [['prune', '--method', 'magnitude', '--metric', 'W', '--out', 'pout'], /exactly one of --metric/],
    [['prune', '--metric', 'sqr(', '--out', 'pout'], /--metric/],
    [['prune', '--method', 'magnitude', '--pattern', '3:4', '--out', 'pout'], /--pattern 3:4/],
    [['prune', '--method', 'magnitude', '--pattern', '2:4', '--sparsity', '0.6', '--out', 'pout'], /--sparsity 0\.6/],
    [['prune', '--method', 'magnitude', '--eval-tokens', '64', '--seqlen', '128', '--out', 'pout'], /--eval-tokens 64: fewer than one window/],
    [['baselines', '--methods', 'magnitude,bogus'], /bogus/],
    [['search', '--iterations', '5', '--generations', '5', '--db', 'x.sqlite'], /either --iterations/],
    [['search', '--resume'], /--resume needs --db/],
    [['search', '--resume', '--db', 'x.sqlite'], /no such database/],
    [['search', '--baselines', 'magnitude,bogus', '--db', 'x.sqlite'], /bogus/],
    [['search', '--workers', String(os.availableParallelism() + 1), '--db', 'x.sqlite'], /--workers \d+: this machine has \d+ cores/],
    [['report', '--db', 'afile'], /not a symprune database/],
    [['export', '--db', 'afile', '--format', 'json', '--out', 'x.json'], /not a symprune database/],
    [['export', '--db', 'afile', '--format', 'json', '--out', 'afile'], /would overwrite the database/],
    [['train', '--config', 'afile', '--out', 'tout'], /afile/],
    [['tokenizer', 'train', '--data', 'brown:nope', '--out', 'tok.json'], /brown:nope/],
    [['tokenizer'], /name an action/],
    [[], /name a command/],
    [['bogus'], /Unknown argument: bogus/],
    [['eval', 'extra'], /Unknown argument: extra/],
    [['dashboard', '--db', 'missing.sqlite', '--port', 'abc'], /--port/],
    [['dashboard', '--db', 'afile', '--port', '70000'], /--port/],
    [['dashboard', '--db', 'afile', '--host', ''], /--host/],
  ];
  for (const [argv, re] of cases) {
    const r = await runner.run(argv);
    assertRefusal(r, argv, re);
    assert.equal(snapshot(dir), before, `${JSON.stringify(argv)} changed the file system`);
  }
});
