/**
 * The CLI's validation layer: every flag is parsed strictly by yargs `coerce` (so a bad
 * value fails while the command line is read, before any work), and every path is checked
 * for what the command will do with it before anything is loaded or created.
 *
 * Flag helpers return yargs option objects tagged with their kind, so the fuzz test can
 * generate bad values for every flag of every command from the commands themselves.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Options } from 'yargs';
import { InputError } from '../errors.ts';

/** What a flag holds; the fuzz test derives its bad values from this. */
export type FlagKind =
  | { kind: 'int'; min: number; max?: number }
  | { kind: 'number'; min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean; list?: boolean }
  | { kind: 'string' }
  | { kind: 'boolean' }
  | { kind: 'choice'; choices: readonly string[] }
  | { kind: 'input-file' }
  | { kind: 'input-files'; keyword?: string }
  | { kind: 'input-dirs' }
  | { kind: 'output-file'; ext?: RegExp }
  | { kind: 'output-dir' }
  | { kind: 'model' }
  | { kind: 'data' };

export const FLAG_KIND = Symbol('symprune.flagKind');
export type TaggedOption = Options & { [FLAG_KIND]: FlagKind };

function tag(o: Options, k: FlagKind): TaggedOption {
  // An explicit `default: undefined` makes yargs coerce an absent flag; leave such keys out.
  for (const key of ['default', 'demandOption'] as const) if (o[key] === undefined) delete o[key];
  const coerce = o.coerce as ((v: unknown) => unknown) | undefined;
  if (coerce) o.coerce = (v: unknown) => (v === undefined ? v : coerce(v));
  return Object.assign(o, { [FLAG_KIND]: k });
}

interface Common {
  describe: string;
  demandOption?: boolean;
}

/** One value of a flag: refuses a repeated flag and an empty value. */
function single(flag: string, v: unknown): string {
  if (Array.isArray(v)) throw new InputError(`--${flag} given ${v.length} times; give it once`);
  const s = String(v);
  if (s.trim() === '') throw new InputError(`--${flag}: empty value`);
  return s;
}

const INT_RE = /^[+-]?\d+$/;
const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** An integer flag in [min, max]; decimal digits only (no 1.5, 1e3, 0x10, Infinity). */
export function intFlag(flag: string, o: Common & { min: number; max?: number; default?: number }): TaggedOption {
  const range = o.max === undefined ? `an integer of at least ${o.min}` : `an integer from ${o.min} to ${o.max}`;
  const coerce = (v: unknown): number => {
    if (typeof v === 'number') return v; // the default
    const s = single(flag, v).trim();
    const n = Number(s);
    if (!INT_RE.test(s) || !Number.isSafeInteger(n) || n < o.min || (o.max !== undefined && n > o.max)) throw new InputError(`--${flag} ${s}: must be ${range}`);
    return n;
  };
  return tag({ type: 'string', requiresArg: true, describe: o.describe, default: o.default, demandOption: o.demandOption, coerce }, { kind: 'int', min: o.min, max: o.max });
}

/** A finite number flag within bounds (inclusive unless said otherwise). */
export function numberFlag(flag: string, o: Common & { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean; default?: number }): TaggedOption {
  const parse = numberParser(flag, o);
  const coerce = (v: unknown): number => (typeof v === 'number' ? v : parse(single(flag, v).trim()));
  return tag({ type: 'string', requiresArg: true, describe: o.describe, default: o.default, demandOption: o.demandOption, coerce }, { kind: 'number', min: o.min, max: o.max, minExclusive: o.minExclusive, maxExclusive: o.maxExclusive });
}

/** A comma-separated list of numbers, each within bounds, none twice (`--sparsity 0.5,0.7`). */
export function numberListFlag(flag: string, o: Common & { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean }): TaggedOption {
  const parse = numberParser(flag, o);
  const coerce = (v: unknown): number[] => {
    const s = single(flag, v).trim();
    const items = s.split(',').map((x) => x.trim());
    if (items.some((x) => x === '')) throw new InputError(`--${flag} ${s}: empty item in the comma-separated list`);
    const xs = items.map(parse);
    const dup = xs.find((x, i) => xs.indexOf(x) !== i);
    if (dup !== undefined) throw new InputError(`--${flag} ${s}: ${dup} given twice`);
    return xs;
  };
  return tag({ type: 'string', requiresArg: true, describe: o.describe, demandOption: o.demandOption, coerce }, { kind: 'number', min: o.min, max: o.max, minExclusive: o.minExclusive, maxExclusive: o.maxExclusive, list: true });
}

function numberParser(flag: string, o: { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean }): (s: string) => number {
  const lo = o.min === undefined ? '' : o.minExclusive ? `greater than ${o.min}` : `at least ${o.min}`;
  const hi = o.max === undefined ? '' : o.maxExclusive ? `less than ${o.max}` : `at most ${o.max}`;
  const range = o.minExclusive && o.maxExclusive ? `a number strictly between ${o.min} and ${o.max}` : ['a finite number', lo, hi].filter(Boolean).join(', ');
  return (s) => {
    const n = Number(s);
    const ok =
      NUM_RE.test(s) &&
      Number.isFinite(n) &&
      (o.min === undefined || (o.minExclusive ? n > o.min : n >= o.min)) &&
      (o.max === undefined || (o.maxExclusive ? n < o.max : n <= o.max));
    if (!ok) throw new InputError(`--${flag} ${s}: must be ${range}`);
    return n;
  };
}

/** A free-text flag (a metric, a list, a pattern): once, never empty. Its meaning is checked by the command. */
export function stringFlag(flag: string, o: Common & { default?: string }): TaggedOption {
  return tag({ type: 'string', requiresArg: true, describe: o.describe, default: o.default, demandOption: o.demandOption, coerce: (v: unknown) => single(flag, v) }, { kind: 'string' });
}

export function booleanFlag(describe: string): TaggedOption {
  return tag({ type: 'boolean', describe }, { kind: 'boolean' });
}

export function choiceFlag(flag: string, choices: readonly string[], o: Common & { default?: string }): TaggedOption {
  const coerce = (v: unknown): string => {
    const s = single(flag, v);
    if (!choices.includes(s)) throw new InputError(`--${flag} ${s}: unknown ${flag}; expected one of ${choices.join(", ")}`);
    return s;
  };
  return tag({ type: 'string', requiresArg: true, describe: `${o.describe} (${choices.join(', ')})`, default: o.default, demandOption: o.demandOption, coerce }, { kind: 'choice', choices });
}

/** An existing regular file to read. */
export function inputFileFlag(flag: string, o: Common): TaggedOption {
  return tag({ type: 'string', requiresArg: true, describe: o.describe, demandOption: o.demandOption, coerce: (v: unknown) => checkInputFile(`--${flag}`, single(flag, v)) }, { kind: 'input-file' });
}

/** Existing regular files, the flag repeatable; `keyword` (e.g. `none`) is accepted alone instead. */
export function inputFilesFlag(flag: string, o: Common & { keyword?: string }): TaggedOption {
  const coerce = (v: unknown): string[] => {
    const list = (Array.isArray(v) ? v : [v]).map(String);
    if (o.keyword !== undefined && list.length === 1 && list[0] === o.keyword) return list;
    for (const p of list) {
      if (p.trim() === '') throw new InputError(`--${flag}: empty value`);
      checkInputFile(`--${flag}`, p);
    }
    return list;
  };
  return tag({ type: 'string', array: true, requiresArg: true, describe: o.describe, demandOption: o.demandOption, coerce }, { kind: 'input-files', keyword: o.keyword });
}

/** Existing folders, the flag repeatable. */
export function inputDirsFlag(flag: string, o: Common): TaggedOption {
  const coerce = (v: unknown): string[] => {
    const list = (Array.isArray(v) ? v : [v]).map(String);
    for (const p of list) {
      if (p.trim() === '') throw new InputError(`--${flag}: empty value`);
      const st = statOrNull(p);
      if (!st) throw new InputError(`--${flag} ${p}: folder not found`);
      if (!st.isDirectory()) throw new InputError(`--${flag} ${p}: not a folder`);
    }
    return list;
  };
  return tag({ type: 'string', array: true, requiresArg: true, describe: o.describe, demandOption: o.demandOption, coerce }, { kind: 'input-dirs' });
}

/** A file to write: it may exist (as a regular file) and its folder must exist or be creatable. */
export function outputFileFlag(flag: string, o: Common & { ext?: RegExp; extName?: string; default?: string }): TaggedOption {
  const coerce = (v: unknown): string => {
    const p = single(flag, v);
    checkOutputFile(`--${flag}`, p, o.ext && { re: o.ext, name: o.extName ?? String(o.ext) });
    return p;
  };
  return tag({ type: 'string', requiresArg: true, describe: o.describe, default: o.default, demandOption: o.demandOption, coerce }, { kind: 'output-file', ext: o.ext });
}

/** A folder to write into: it may exist (as a folder) or must be creatable. */
export function outputDirFlag(flag: string, o: Common): TaggedOption {
  return tag({ type: 'string', requiresArg: true, describe: o.describe, demandOption: o.demandOption, coerce: (v: unknown) => {
    const p = single(flag, v);
    checkOutputDir(`--${flag}`, p);
    return p;
  } }, { kind: 'output-dir' });
}

/** `--model`: a file or a folder that exists (what it holds is checked when it is resolved). */
export function modelFlag(describe = 'a Hugging Face folder (config.json + safetensors), an ONNX file, or a folder holding one (default: the bundled model)'): TaggedOption {
  const coerce = (v: unknown): string => {
    const s = single('model', v);
    if (!fs.existsSync(s)) throw new InputError(`model not found: ${s}`);
    return s;
  };
  return tag({ type: 'string', requiresArg: true, describe, coerce }, { kind: 'model' });
}

/**
 * A data spec (brown:<split>, FILE.txt, FILE.npy, FILE.bin), checked for its form here; the
 * file itself is read (and refused if missing) only by a command that needs the data, before
 * it writes anything.
 */
export function dataFlag(flag: string, o: Common & { default?: string }): TaggedOption {
  return tag({ type: 'string', requiresArg: true, describe: o.describe, default: o.default, demandOption: o.demandOption, coerce: (v: unknown) => checkDataSpec(`--${flag}`, single(flag, v)) }, { kind: 'data' });
}

// ---------------------------------------------------------------- paths

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e);
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** An existing regular file; returns the path as given. */
export function checkInputFile(what: string, p: string): string {
  if (p === '') throw new InputError(`${what}: empty path`);
  const st = statOrNull(p);
  if (!st) throw new InputError(`${what} ${p}: file not found`);
  if (st.isDirectory()) throw new InputError(`${what} ${p}: is a folder, expected a file`);
  if (!st.isFile()) throw new InputError(`${what} ${p}: not a regular file`);
  try {
    fs.accessSync(p, fs.constants.R_OK);
  } catch (e) {
    throw new InputError(`${what} ${p}: cannot read (${errCode(e)})`);
  }
  return p;
}

const BROWN = /^brown:/;

/** The form of a data spec: brown:<split> or a .txt, .npy or .bin file name. */
export function checkDataSpec(what: string, spec: string): string {
  if (BROWN.test(spec) || /\.(txt|npy|bin)$/i.test(spec)) return spec;
  throw new InputError(`${what} ${spec}: unknown data (use brown:train|calib|search|test, FILE.txt, FILE.npy or FILE.bin)`);
}

/**
 * The nearest existing ancestor of an absolute path (itself when it exists). Walking up
 * with stat never loops, unlike a recursive mkdir under /proc.
 */
function existingAncestor(abs: string): { dir: string; st: fs.Stats } {
  let p = abs;
  for (;;) {
    const st = statOrNull(p);
    if (st) return { dir: p, st };
    const up = path.dirname(p);
    if (up === p) throw new InputError(`${abs}: no existing folder above it`);
    p = up;
  }
}

/**
 * Can entries be created in `dir`? Tried for real (a temporary folder made and removed at
 * once): permission bits say yes to root on /proc and read-only mounts.
 */
function checkCreatable(what: string, p: string, dir: string): void {
  let probe: string;
  try {
    probe = fs.mkdtempSync(path.join(dir, '.symprune-probe-'));
  } catch (e) {
    throw new InputError(`${what} ${p}: cannot create anything in ${dir} (${errCode(e)})`);
  }
  fs.rmdirSync(probe);
}

/** A folder to write into: an existing folder, or one that can be made. Returns the absolute path. */
export function checkOutputDir(what: string, p: string, shown = p): string {
  if (p.trim() === '') throw new InputError(`${what}: empty path`);
  const abs = path.resolve(p);
  const { dir, st } = existingAncestor(abs);
  const itself = dir === abs && shown === p;
  p = shown;
  if (!st.isDirectory()) {
    throw new InputError(itself ? `${what} ${p}: exists and is not a folder` : `${what} ${p}: ${dir} is a file, not a folder`);
  }
  checkCreatable(what, p, dir);
  return abs;
}

/** A file to write (replaced if it exists). Returns the absolute path. */
export function checkOutputFile(what: string, p: string, ext?: { re: RegExp; name: string }): string {
  if (p.trim() === '') throw new InputError(`${what}: empty path`);
  if (ext && !ext.re.test(p)) throw new InputError(`${what} ${p}: expected ${ext.name}`);
  const abs = path.resolve(p);
  const st = statOrNull(abs);
  if (st?.isDirectory()) throw new InputError(`${what} ${p}: is a folder, expected a file`);
  if (st && !st.isFile()) throw new InputError(`${what} ${p}: not a regular file`);
  if (p.endsWith('/') || p.endsWith(path.sep)) throw new InputError(`${what} ${p}: names a folder, expected a file`);
  checkOutputDir(what, path.dirname(abs), p);
  return abs;
}

export { makeDirs } from '../files.ts';

// ---------------------------------------------------------------- the model and the machine

/** Refuse a window longer than the model's positions (onnxruntime would fail deep in a Gather). */
export function checkSeqlen(what: string, seqlen: number, maxPositions: number | undefined): void {
  if (maxPositions !== undefined && seqlen > maxPositions) throw new InputError(`${what} ${seqlen}: the model has ${maxPositions} positions; use at most ${maxPositions}`);
}

/** Cores this process may use. */
export function coreCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/**
 * `--workers` above the core count is refused: each worker holds a copy of the model and an
 * onnxruntime session, so oversubscription costs memory and slows every task (which also
 * stretches the automatic task time limit) without adding throughput.
 */
export function checkWorkers(workers: number | undefined, cores = coreCount()): void {
  if (workers !== undefined && workers > cores) throw new InputError(`--workers ${workers}: this machine has ${cores} cores; use at most ${cores}`);
}

/** `--threads`: onnxruntime intra-op threads. */
export function threadsFlag(describe = 'onnxruntime threads (default: all cores)'): TaggedOption {
  return intFlag('threads', { min: 1, max: 1024, describe });
}
