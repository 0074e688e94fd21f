/**
 * Writing files safely. Files are written under a temporary name beside their target (`<target>.tmp-<pid>-<id>`)
 * and renamed over it, so an interrupted write never leaves a half-written target. A write
 * killed before its rename leaves the temporary file: the next write to the same target
 * removes those whose writing process is gone.
 */
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError } from './errors.ts';
import { pidAlive } from './pid.ts';

let counter = 0;

/** A fresh temporary name for `target`, in its folder. */
export function tempPath(target: string): string {
  return `${resolve(target)}.tmp-${process.pid}-${Date.now().toString(36)}${(counter++).toString(36)}`;
}

/** Remove `<target>.tmp-<pid>-*` files left by processes that no longer run. */
export function removeStaleTemps(target: string): void {
  const dir = dirname(resolve(target));
  const prefix = `${basename(target)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // the folder does not exist yet: nothing left over
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(name.slice(prefix.length))?.[1] ?? NaN);
    if (!Number.isSafeInteger(pid) || pid === process.pid || pidAlive(pid)) continue; // not ours, or a write in progress
    rmSync(join(dir, name), { force: true, recursive: true });
  }
}

/** Write a whole file atomically (temporary file, then rename), cleaning leftovers of earlier writes first. */
export function writeFileAtomicSync(target: string, data: string | Uint8Array): void {
  removeStaleTemps(target);
  const tmp = tempPath(target);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Make a folder and its missing parents one level at a time, returning the folders made
 * (outermost first). Node's recursive mkdir spins forever where mkdir answers ENOENT for an
 * existing parent (/proc); this fails with an InputError instead.
 */
export function makeDirs(dir: string): string[] {
  const missing: string[] = [];
  let p = resolve(dir);
  for (;;) {
    try {
      if (!statSync(p).isDirectory()) throw new InputError(`cannot create folder ${resolve(dir)}: ${p} is a file`);
      break;
    } catch (e) {
      if (e instanceof InputError) throw e;
      missing.push(p);
      const up = dirname(p);
      if (up === p) break;
      p = up;
    }
  }
  const made: string[] = [];
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
      made.push(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      if (code !== 'EEXIST') throw new InputError(`cannot create folder ${d} (${code})`);
    }
  }
  return made;
}
