/**
 * One writer per search database. The writer holds `<db>.lock`, a small JSON file naming it
 * (pid, host, process start time, since when). The file is created atomically complete
 * (written under a temporary name, then hard-linked into place, which fails if a lock exists),
 * so two writers started at the same instant cannot both hold it.
 *
 * The lock dies with its process: a lock whose process is gone (killed with -9, a crash, a
 * power cut) is recognised on this host as stale (no such pid, or the pid now belongs to a
 * process that started later) and taken over, so nothing ever needs cleaning by hand. A lock
 * held from another host cannot be checked and is refused, naming the host.
 *
 * Readers (report, export, a dashboard) never take the lock: SQLite's WAL mode lets them
 * read while the writer writes.
 */
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { tempPath } from '../files.ts';
import { InputError } from '../errors.ts';
import { pidAlive, processStartTicks } from '../pid.ts';

export interface LockHolder {
  pid: number;
  host: string;
  /** Clock ticks since boot when the holder started (Linux); tells a reused pid apart. */
  startTicks: string | null;
  since: string;
  /** What holds it, e.g. `search`. */
  what: string;
}

export function lockPathOf(dbPath: string): string {
  return `${resolve(dbPath)}.lock`;
}

function me(what: string): LockHolder {
  return { pid: process.pid, host: hostname(), startTicks: processStartTicks(process.pid), since: new Date().toISOString(), what };
}

function readHolder(file: string): { text: string; holder: LockHolder | null } | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const h = JSON.parse(text) as LockHolder;
    return { text, holder: typeof h?.pid === 'number' && typeof h.host === 'string' ? h : null };
  } catch {
    return { text, holder: null };
  }
}

/** Is the holder's process still running? Unknowable from another host: assumed so. */
export function holderAlive(h: LockHolder): boolean {
  if (h.host !== hostname()) return true;
  if (!pidAlive(h.pid)) return false;
  const ticks = processStartTicks(h.pid);
  return h.startTicks === null || ticks === null || ticks === h.startTicks;
}

export function describeHolder(h: LockHolder): string {
  return `${h.what || 'a writer'} (pid ${h.pid} on host ${h.host}, since ${h.since})`;
}

/** The live holder of a database's lock, if any (for messages and readers). */
export function lockHolder(dbPath: string): LockHolder | null {
  const r = readHolder(lockPathOf(dbPath));
  return r?.holder && holderAlive(r.holder) ? r.holder : null;
}

export interface WriterLock {
  readonly file: string;
  readonly holder: LockHolder;
  /** Give the lock up (idempotent); also done at process exit. */
  release(): void;
}

/**
 * Take the writer lock of a database, or throw an InputError naming the process that holds
 * it. Stale locks (their process is gone) are taken over.
 */
export function acquireWriterLock(dbPath: string, what = 'search'): WriterLock {
  const file = lockPathOf(dbPath);
  const holder = me(what);
  const text = JSON.stringify(holder) + '\n';
  for (let attempt = 0; attempt < 5; attempt++) {
    const tmp = tempPath(file);
    writeFileSync(tmp, text);
    try {
      linkSync(tmp, file); // atomic: fails with EEXIST when a lock is there
      return held(file, holder);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      rmSync(tmp, { force: true });
    }
    const found = readHolder(file);
    if (!found) continue; // released meanwhile: try again
    if (!found.holder) throw new InputError(`${dbPath}: the lock file ${file} is not a symprune lock; remove it if no search uses this database`);
    if (holderAlive(found.holder)) {
      const other = found.holder.host !== holder.host ? `; if it no longer runs on ${found.holder.host}, remove ${file}` : '';
      throw new InputError(`${dbPath} is being written by ${describeHolder(found.holder)}; one writer per database: wait for it, stop it, or use another --db${other}`);
    }
    breakStale(file, found.text);
  }
  throw new InputError(`${dbPath}: could not take the writer lock ${file} (other processes keep taking it)`);
}

/**
 * Remove a stale lock without removing a fresh one that replaced it meanwhile: move it
 * aside atomically, and put it back if what was moved is not what was judged stale.
 */
function breakStale(file: string, staleText: string): void {
  const aside = `${file}.stale-${process.pid}-${Date.now()}`;
  try {
    renameSync(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else broke it
    throw e;
  }
  try {
    if (readFileSync(aside, 'utf8') !== staleText) {
      try {
        linkSync(aside, file);
      } catch {
        // a third process took the lock meanwhile: it holds it now
      }
    }
  } finally {
    rmSync(aside, { force: true });
  }
}

const heldLocks = new Set<() => void>();
let exitHook = false;

function held(file: string, holder: LockHolder): WriterLock {
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    heldLocks.delete(release);
    const now = readHolder(file);
    // Only our own lock is removed (never one a later writer took over).
    if (now?.holder && now.holder.pid === holder.pid && now.holder.since === holder.since && now.holder.host === holder.host) rmSync(file, { force: true });
  };
  heldLocks.add(release);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const r of [...heldLocks]) r();
    });
  }
  return { file, holder, release };
}
