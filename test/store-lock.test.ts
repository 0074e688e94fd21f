import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { acquireWriterLock, lockHolder, lockPathOf } from '../src/store/lock.ts';
import { InputError } from '../src/errors.ts';
import { processStartTicks } from '../src/pid.ts';

const LOCK_TS = path.resolve(import.meta.dirname, '..', 'src', 'store', 'lock.ts');
const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-lock-'));

/** A child process that takes the lock, reports `ok` or `refused: <message>`, then holds it until its stdin closes. */
function holder(db: string): { child: ReturnType<typeof spawn>; result: Promise<string> } {
  const code = `
    import { acquireWriterLock } from ${JSON.stringify(LOCK_TS)};
    let line;
    try { acquireWriterLock(${JSON.stringify(db)}); line = 'ok'; } catch (e) { line = 'refused: ' + e.message; }
    process.stdout.write(line + '\\n');
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  const result = new Promise<string>((res) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) res(out.trim());
    });
  });
  return { child, result };
}

test('a second writer is refused with the holder named; release lets the next one in', () => {
  const db = path.join(tmp(), 'run.sqlite');
  const a = acquireWriterLock(db);
  assert.ok(fs.existsSync(lockPathOf(db)));
  assert.equal(lockHolder(db)?.pid, process.pid);
  assert.throws(
    () => acquireWriterLock(db),
    (e: unknown) => e instanceof InputError && e.message.includes(`pid ${process.pid} on host ${os.hostname()}`) && e.message.includes('one writer per database'),
  );
  a.release();
  assert.ok(!fs.existsSync(lockPathOf(db)), 'release removes the lock file');
  const b = acquireWriterLock(db);
  b.release();
  a.release(); // idempotent, and never removes another holder's lock
});

test('processes racing for one lock: exactly one holds it, the others are told who', async () => {
  const db = path.join(tmp(), 'race.sqlite');
  const kids = Array.from({ length: 4 }, () => holder(db));
  const results = await Promise.all(kids.map((k) => k.result));
  assert.equal(results.filter((r) => r === 'ok').length, 1, results.join('\n'));
  const winner = kids[results.indexOf('ok')]!.child.pid;
  for (const r of results.filter((x) => x !== 'ok')) assert.match(r, new RegExp(`^refused: .*pid ${winner} on host`));
  await Promise.all(kids.map((k) => new Promise((res) => (k.child.on('exit', res), k.child.stdin!.end()))));
  assert.ok(!fs.existsSync(lockPathOf(db)), 'the winner released it at exit');
});

test('a lock left by a process killed with -9 is taken over', async () => {
  const db = path.join(tmp(), 'killed.sqlite');
  const k = holder(db);
  assert.equal(await k.result, 'ok');
  assert.throws(() => acquireWriterLock(db), /pid \d+ on host/);
  await new Promise((res) => (k.child.on('exit', res), k.child.kill('SIGKILL')));
  assert.ok(fs.existsSync(lockPathOf(db)), 'kill -9 leaves the file');
  const l = acquireWriterLock(db);
  assert.equal(l.holder.pid, process.pid);
  l.release();
});

test('a lock whose pid now belongs to another process, or from another host, is judged correctly', () => {
  const dir = tmp();
  // Our own pid with another start time: the process that wrote it is gone and the pid was reused.
  const reused = path.join(dir, 'reused.sqlite');
  if (processStartTicks(process.pid) !== null) {
    fs.writeFileSync(lockPathOf(reused), JSON.stringify({ pid: process.pid, host: os.hostname(), startTicks: '1', since: 'then', what: 'search' }));
    acquireWriterLock(reused).release();
  }
  // Another host: cannot be checked, so refused with the host named and how to clear it.
  const remote = path.join(dir, 'remote.sqlite');
  fs.writeFileSync(lockPathOf(remote), JSON.stringify({ pid: 1, host: 'elsewhere.example', startTicks: null, since: 'then', what: 'search' }));
  assert.throws(() => acquireWriterLock(remote), /pid 1 on host elsewhere\.example.*if it no longer runs on elsewhere\.example, remove/);
  // Something that is not our lock file is never removed.
  const foreign = path.join(dir, 'foreign.sqlite');
  fs.writeFileSync(lockPathOf(foreign), 'not json');
  assert.throws(() => acquireWriterLock(foreign), /is not a symprune lock/);
  assert.equal(fs.readFileSync(lockPathOf(foreign), 'utf8'), 'not json');
});

test('a dead pid (not running at all) is stale', () => {
  const db = path.join(tmp(), 'dead.sqlite');
  // A pid that existed and exited: a finished child's.
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  fs.writeFileSync(lockPathOf(db), JSON.stringify({ pid: Number(gone.stdout), host: os.hostname(), startTicks: null, since: 'then', what: 'search' }));
  assert.equal(lockHolder(db), null);
  acquireWriterLock(db).release();
});
