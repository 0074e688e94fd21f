/**
 * The search database: opening with checks, WAL, foreign keys, and numbered migrations.
 * A file that is not SQLite, or is SQLite but not ours, is refused before anything is
 * written to it, so a wrong --db never damages someone's file.
 */
import Database from 'better-sqlite3';
import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync } from 'node:fs';
import { makeDirs } from '../files.ts';
import { dirname, resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { BINARY_OPS, TERMINALS, UNARY_OPS, type BinaryOp, type MetricTerminal as Terminal, type UnaryOp } from '../search-space/tree.ts';

export type DB = Database.Database;

/** The search space's operators, unary then binary: one `n_<op>` column each, in this order. */
export const OPERATORS: readonly Operator[] = [...UNARY_OPS, ...BINARY_OPS];
export type Operator = UnaryOp | BinaryOp;
export { TERMINALS, type Terminal };

const opColumns = OPERATORS.map((op) => `  n_${op} INTEGER NOT NULL DEFAULT 0`).join(',\n');

/**
 * A run's one setting as stored in its configuration, named as settingLabelOf names it
 * (`0.5:unstructured`, `2:4`): SQL over the configuration's JSON, for the migration.
 */
function settingLabelSql(config: string): string {
  const pattern = `lower(trim(COALESCE(json_extract(${config}, '$.pattern'), 'unstructured')))`;
  const sparsity = `json_extract(${config}, '$.sparsity')`;
  return `CASE WHEN ${pattern} = 'unstructured' THEN (CASE WHEN ${sparsity} IS NULL THEN 'unstructured' ELSE CAST(${sparsity} AS TEXT) || ':unstructured' END) ELSE replace(${pattern}, ' ', '') END`;
}

/** Migrations in order; migration i brings the schema from version i to i+1. Never edit one that has shipped. */
export const MIGRATIONS: string[] = [
  `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('app', 'symprune');

CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  created TEXT NOT NULL,
  updated TEXT NOT NULL,
  config TEXT NOT NULL,              -- JSON of every setting that shapes the results
  config_hash TEXT NOT NULL,
  seed INTEGER NOT NULL,
  model_path TEXT NOT NULL,
  model_sha256 TEXT NOT NULL,
  data_hashes TEXT NOT NULL,         -- JSON {split: sha256 of the token ids}
  versions TEXT NOT NULL,            -- JSON {symprune, onnxruntime, node}
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
  error TEXT,
  seconds REAL NOT NULL DEFAULT 0    -- wall time spent in this run over all sessions
);

-- The GP engine's serialised state after a completed step: resume starts from the last one.
CREATE TABLE checkpoints (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  state TEXT NOT NULL,
  created TEXT NOT NULL,
  PRIMARY KEY (run, step)
);

CREATE TABLE individuals (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  id INTEGER NOT NULL,               -- the engine's individual id, dense from 0 within a run
  infix TEXT NOT NULL,               -- the tree after OOS simplification, infix
  canonical TEXT NOT NULL,           -- its canonical form (commutative operands ordered, root wrappers stripped)
  tree TEXT NOT NULL,                -- JSON tree (Pruner-Zero format) of infix
  hash TEXT NOT NULL,                -- hash of the canonical form
  size INTEGER NOT NULL,
  depth INTEGER NOT NULL,
  n_W INTEGER NOT NULL,
  n_G INTEGER NOT NULL,
  n_X INTEGER NOT NULL,
${opColumns},
  parents TEXT NOT NULL DEFAULT '[]', -- JSON array of individual ids
  origin TEXT NOT NULL,              -- init | seed | crossover | mutation-point | ... ('pending' until its step ends)
  step INTEGER NOT NULL,             -- step (iteration or generation) that created it
  fingerprint TEXT,                  -- hash of the masks over all layers
  invalid TEXT,                      -- why it has no usable fitness (invalid tree, NaN scores, failed evaluation)
  shared_with INTEGER,               -- individual whose fitness it took (equal canonical form or masks)
  fitness REAL,                      -- final fitness: perplexity, Inf when invalid or failed, NULL while pending
  fidelity TEXT,                     -- which evaluation the fitness comes from
  created TEXT NOT NULL,
  PRIMARY KEY (run, id)
);
CREATE INDEX individuals_fingerprint ON individuals (run, fingerprint);
CREATE INDEX individuals_hash ON individuals (run, hash);

CREATE TABLE evaluations (
  id INTEGER PRIMARY KEY,
  run INTEGER NOT NULL,
  individual INTEGER NOT NULL,
  fidelity TEXT NOT NULL CHECK (fidelity IN ('short', 'full')),
  tokens INTEGER NOT NULL,           -- predicted tokens the perplexity is over
  ppl REAL,                          -- NULL unless status is ok or reused
  seconds REAL NOT NULL DEFAULT 0,
  worker INTEGER,
  status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'timeout', 'crash', 'reused')),
  error TEXT,
  reused_from INTEGER REFERENCES evaluations(id),
  created TEXT NOT NULL,
  FOREIGN KEY (run, individual) REFERENCES individuals(run, id) ON DELETE CASCADE,
  UNIQUE (run, individual, fidelity)
);

-- Candidate trees never made individuals because their masks equalled an evaluated
-- individual's: each row is a perplexity evaluation the fingerprint saved.
CREATE TABLE mask_duplicates (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  hash TEXT NOT NULL,
  infix TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  step INTEGER NOT NULL,
  created TEXT NOT NULL,
  PRIMARY KEY (run, hash)
);

CREATE TABLE baselines (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  method TEXT NOT NULL,
  pattern TEXT NOT NULL,
  sparsity REAL NOT NULL,
  split TEXT NOT NULL,
  tokens INTEGER NOT NULL,
  ppl REAL,
  seconds REAL NOT NULL DEFAULT 0,
  error TEXT,
  created TEXT NOT NULL,
  PRIMARY KEY (run, method, pattern, sparsity, split)
);

CREATE TABLE progress (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  evaluations INTEGER NOT NULL,      -- perplexity evaluations paid so far (short + full)
  individuals INTEGER NOT NULL,
  best REAL,
  median REAL,
  elapsed REAL NOT NULL,
  created TEXT NOT NULL,
  PRIMARY KEY (run, step)
);
`,
  `
-- The job queue's workers as the coordinator heard of them (runs with --queue only; local
-- threads are not listed): from each job's result and from the queue's list of connected workers.
CREATE TABLE workers (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  worker TEXT NOT NULL,              -- its name on the queue: host:pid
  host TEXT NOT NULL,
  pid INTEGER,
  threads INTEGER,                   -- onnxruntime threads per evaluation (known once it answered a job)
  device TEXT,
  first_seen TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  jobs_done INTEGER NOT NULL DEFAULT 0,   -- jobs of this run it answered (masks and perplexities)
  jobs_failed INTEGER NOT NULL DEFAULT 0, -- jobs whose evaluation failed (error, timeout) or that failed for good
  evaluations INTEGER NOT NULL DEFAULT 0, -- perplexity evaluations among its jobs
  seconds REAL NOT NULL DEFAULT 0,   -- time spent on this run's jobs
  state TEXT NOT NULL CHECK (state IN ('busy', 'idle', 'gone')), -- gone: disconnected, or the run stopped listening
  PRIMARY KEY (run, worker)
);
`,
  // 3: each evaluation records the setting (sparsity and pattern) it was made at and the
  // fingerprint of the masks it measured, so a search over several settings keeps one row per
  // setting and reuses a setting's perplexity when masks repeat there. Old rows get their
  // run's one setting (the label settingLabelOf gives) and their individual's fingerprint.
  `
CREATE TABLE evaluations_v3 (
  id INTEGER PRIMARY KEY,
  run INTEGER NOT NULL,
  individual INTEGER NOT NULL,
  setting TEXT NOT NULL,             -- 0.5:unstructured, 2:4, ...: the setting the masks were made at
  fidelity TEXT NOT NULL CHECK (fidelity IN ('short', 'full')),
  tokens INTEGER NOT NULL,
  ppl REAL,
  seconds REAL NOT NULL DEFAULT 0,
  worker INTEGER,
  status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'timeout', 'crash', 'reused')),
  error TEXT,
  reused_from INTEGER REFERENCES evaluations_v3(id),
  fingerprint TEXT,                  -- hash of the masks this perplexity is of (NULL when masking failed)
  created TEXT NOT NULL,
  FOREIGN KEY (run, individual) REFERENCES individuals(run, id) ON DELETE CASCADE,
  UNIQUE (run, individual, setting, fidelity)
);
INSERT INTO evaluations_v3 (id, run, individual, setting, fidelity, tokens, ppl, seconds, worker, status, error, reused_from, fingerprint, created)
SELECT e.id, e.run, e.individual,
       ${settingLabelSql('r.config')},
       e.fidelity, e.tokens, e.ppl, e.seconds, e.worker, e.status, e.error, e.reused_from,
       (SELECT i.fingerprint FROM individuals i WHERE i.run = e.run AND i.id = e.individual),
       e.created
FROM evaluations e JOIN runs r ON r.id = e.run ORDER BY e.id;
DROP TABLE evaluations;
ALTER TABLE evaluations_v3 RENAME TO evaluations;
CREATE INDEX evaluations_setting_fingerprint ON evaluations (run, setting, fingerprint);
`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export interface OpenOptions {
  /** Open for reading only (report, export): the file must exist and is never modified. */
  readonly?: boolean;
}

const SQLITE_MAGIC = 'SQLite format 3\0';

/** Open (or create) a symprune database, migrating it to the current schema. */
export function openDatabase(path: string, opts: OpenOptions = {}): DB {
  const abs = resolve(path);
  const exists = existsSync(abs);
  if (opts.readonly && !exists) throw new InputError(`${path}: no such database`);
  if (exists) {
    if (!statSync(abs).isFile()) throw new InputError(`${path}: not a file`);
    checkHeader(path, abs);
    if (!opts.readonly) checkWritable(path, abs, 'file');
  } else {
    const dir = dirname(abs);
    try {
      makeDirs(dir);
    } catch (e) {
      throw new InputError(`${path}: ${(e as Error).message}`);
    }
    checkWritable(path, dir, 'folder');
  }
  let db: DB;
  try {
    db = new Database(abs, { readonly: !!opts.readonly, fileMustExist: exists });
  } catch (e) {
    throw new InputError(`${path}: cannot open database (${(e as Error).message})`);
  }
  try {
    checkOurs(path, db);
    if (!opts.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
    }
    db.pragma('foreign_keys = ON');
    migrate(path, db, !!opts.readonly);
  } catch (e) {
    db.close();
    if (e instanceof InputError) throw e;
    throw new InputError(`${path}: not a symprune database (${(e as Error).message})`);
  }
  return db;
}

function checkHeader(path: string, abs: string): void {
  const size = statSync(abs).size;
  if (size === 0) return; // an empty file is a fresh SQLite database
  const fd = openSync(abs, 'r');
  const buf = Buffer.alloc(16);
  try {
    readSync(fd, buf, 0, 16, 0);
  } finally {
    closeSync(fd);
  }
  if (size < 100 || buf.toString('latin1') !== SQLITE_MAGIC) throw new InputError(`${path}: not a symprune database (file is not a database)`);
}

function checkWritable(path: string, target: string, what: string): void {
  try {
    accessSync(target, constants.W_OK);
  } catch {
    throw new InputError(`${path}: ${what} is not writable`);
  }
}

function checkOurs(path: string, db: DB): void {
  // Reading the schema validates the whole header and schema pages: a damaged file throws here.
  const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all() as string[];
  if (tables.length === 0) return;
  if (!tables.includes('meta')) throw new InputError(`${path}: not a symprune database (it holds other tables: ${tables.slice(0, 3).join(', ')})`);
  const app = db.prepare(`SELECT value FROM meta WHERE key = 'app'`).pluck().get();
  if (app !== 'symprune') throw new InputError(`${path}: not a symprune database (meta.app is ${JSON.stringify(app ?? null)})`);
  const quick = db.pragma('quick_check', { simple: true });
  if (quick !== 'ok') throw new InputError(`${path}: damaged symprune database (${String(quick)})`);
}

/** The schema version recorded in the file; 0 for a fresh file. */
export function schemaVersion(db: DB): number {
  const has = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'`).get();
  if (!has) return 0;
  return (db.prepare(`SELECT COALESCE(MAX(version), 0) FROM schema_version`).pluck().get() as number) ?? 0;
}

function migrate(path: string, db: DB, readonly: boolean): void {
  const v = schemaVersion(db);
  if (v > SCHEMA_VERSION) throw new InputError(`${path}: made by a newer symprune (schema ${v}, this one reads up to ${SCHEMA_VERSION})`);
  if (v === SCHEMA_VERSION) return;
  if (readonly && v === 0) throw new InputError(`${path}: not a symprune database (it holds no tables)`);
  // Read-only, an older file is read as it is: later migrations add tables, whose readers look
  // for them (hasTable), and columns only the search's writer uses (evaluations' setting and
  // fingerprint: a file without them holds runs of one setting, which readers need not name).
  if (readonly) return;
  for (let i = v; i < SCHEMA_VERSION; i++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[i]!);
      db.prepare(`INSERT INTO schema_version (version, applied) VALUES (?, ?)`).run(i + 1, new Date().toISOString());
    })();
  }
}

/** Whether a table has a column (one added by a later migration may be missing from a file opened read-only). */
export function hasColumn(db: DB, table: string, column: string): boolean {
  return (db.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(table) as string[]).includes(column);
}

/** Whether the database has a table (one added by a later migration may be missing from a file opened read-only). */
export function hasTable(db: DB, name: string): boolean {
  return !!db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name);
}
