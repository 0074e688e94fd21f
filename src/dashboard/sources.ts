/**
 * The databases a dashboard serves. Each is opened read-only and checked (a symprune
 * database of a schema this version reads) before the server starts, so a wrong --db is
 * refused with one line. Each connection then notices commits by other connections (a
 * search writing) through `PRAGMA data_version`, which changes only when someone else commits.
 */
import { realpathSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { InputError } from '../errors.ts';
import { openDatabase, type DB } from '../store/schema.ts';

export interface Source {
  /** Index in the --db list: the id the page and the API use. */
  key: number;
  path: string;
  /** Short name for the page: the file name, with its folder when two files share a name. */
  label: string;
  db: DB;
  /** Counts the commits seen by polling; responses are cached per version. */
  version: number;
  dataVersion: number;
}

/** Open every database read-only, or refuse the first bad one (closing those already opened). */
export function openSources(paths: readonly string[]): Source[] {
  if (paths.length === 0) throw new InputError('--db: give at least one search database');
  const out: Source[] = [];
  const seen = new Map<string, string>();
  try {
    for (const path of paths) {
      // An empty file would pass as a fresh database; for a reader it holds nothing.
      if (safeSize(path) === 0) throw new InputError(`${path}: not a symprune database (empty file)`);
      const db = openDatabase(path, { readonly: true });
      const real = realpathSync(path);
      if (seen.has(real)) {
        db.close();
        throw new InputError(`--db ${path}: the same file as --db ${seen.get(real)}`);
      }
      seen.set(real, path);
      out.push({ key: out.length, path, label: basename(path), db, version: 0, dataVersion: dataVersion(db) });
    }
  } catch (e) {
    for (const s of out) s.db.close();
    throw e;
  }
  for (const s of out) if (out.some((o) => o !== s && o.label === basename(s.path))) s.label = `${basename(dirname(s.path))}/${basename(s.path)}`;
  return out;
}

function safeSize(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined; // openDatabase says what is wrong
  }
}

function dataVersion(db: DB): number {
  return db.pragma('data_version', { simple: true }) as number;
}

/** The sources another connection committed to since the last call; their version moves on. */
export function pollChanges(sources: readonly Source[]): Source[] {
  const changed: Source[] = [];
  for (const s of sources) {
    const v = dataVersion(s.db);
    if (v !== s.dataVersion) {
      s.dataVersion = v;
      s.version++;
      changed.push(s);
    }
  }
  return changed;
}

export function closeSources(sources: readonly Source[]): void {
  for (const s of sources) s.db.close();
}
