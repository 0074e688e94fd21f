/**
 * Writes of one search run. Each call is its own transaction (or joins the caller's), so a
 * finished evaluation is on disk the moment it is recorded: `kill -9` loses nothing done.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.ts';
import { OPERATORS, TERMINALS, type DB, type Operator, type Terminal } from './schema.ts';
import { geometricMean, runSettingLabels } from './setting.ts';

export type RunStatus = 'running' | 'finished' | 'failed' | 'interrupted';
export type Fidelity = 'short' | 'full';
export type EvalStatus = 'ok' | 'error' | 'timeout' | 'crash' | 'reused';

export interface RunInfo {
  config: Record<string, unknown>;
  seed: number;
  modelPath: string;
  modelSha256: string;
  dataHashes: Record<string, string>;
  versions: Record<string, string>;
}

export interface RunRow {
  id: number;
  created: string;
  updated: string;
  config: Record<string, unknown>;
  configHash: string;
  seed: number;
  modelPath: string;
  modelSha256: string;
  dataHashes: Record<string, string>;
  versions: Record<string, string>;
  status: RunStatus;
  error: string | null;
  seconds: number;
}

/** Tree shape features stored as columns so SQL can correlate them with perplexity. */
export interface TreeFeatures {
  size: number;
  depth: number;
  terminals: Record<Terminal, number>;
  ops: Partial<Record<Operator, number>>;
}

export interface IndividualInput {
  id: number;
  infix: string;
  /** Canonical infix (defaults to infix). */
  canonical?: string;
  /** Pruner-Zero JSON tree (object or its JSON text). */
  tree: unknown;
  hash: string;
  features: TreeFeatures;
  parents: number[];
  origin: string;
  step: number;
  fingerprint?: string | null;
  invalid?: string | null;
  sharedWith?: number | null;
}

export interface EvaluationInput {
  individual: number;
  /** The setting's name (settingLabelOf); default: the run's first setting. */
  setting?: string;
  fidelity: Fidelity;
  tokens: number;
  ppl: number | null;
  seconds: number;
  worker: number | null;
  status: EvalStatus;
  error?: string | null;
  reusedFrom?: number | null;
  /** Hash of the masks measured (at this setting). */
  fingerprint?: string | null;
}

export interface EvaluationRow extends Required<EvaluationInput> {
  id: number;
}

export interface BaselineInput {
  method: string;
  pattern: string;
  sparsity: number;
  split: string;
  tokens: number;
  ppl: number | null;
  seconds: number;
  error?: string | null;
}

export interface ProgressInput {
  step: number;
  evaluations: number;
  individuals: number;
  best: number | null;
  median: number | null;
  elapsed: number;
}

const now = (): string => new Date().toISOString();

/** JSON with sorted keys, so equal configurations hash equally whatever the key order. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export function configHash(config: Record<string, unknown>): string {
  return createHash('sha256').update(stableJson(config)).digest('hex').slice(0, 16);
}

function toRun(r: Record<string, unknown>): RunRow {
  return {
    id: r.id as number,
    created: r.created as string,
    updated: r.updated as string,
    config: JSON.parse(r.config as string),
    configHash: r.config_hash as string,
    seed: r.seed as number,
    modelPath: r.model_path as string,
    modelSha256: r.model_sha256 as string,
    dataHashes: JSON.parse(r.data_hashes as string),
    versions: JSON.parse(r.versions as string),
    status: r.status as RunStatus,
    error: (r.error as string | null) ?? null,
    seconds: r.seconds as number,
  };
}

/** Every run in the database, oldest first. */
export function listRuns(db: DB): RunRow[] {
  return (db.prepare(`SELECT * FROM runs ORDER BY id`).all() as Record<string, unknown>[]).map(toRun);
}

export function getRun(db: DB, id: number): RunRow | undefined {
  const r = db.prepare(`SELECT * FROM runs WHERE id = ?`).get(id) as Record<string, unknown> | undefined;
  return r && toRun(r);
}

function toEval(r: Record<string, unknown>): EvaluationRow {
  return {
    id: r.id as number,
    individual: r.individual as number,
    setting: r.setting as string,
    fidelity: r.fidelity as Fidelity,
    tokens: r.tokens as number,
    ppl: (r.ppl as number | null) ?? null,
    seconds: r.seconds as number,
    worker: (r.worker as number | null) ?? null,
    status: r.status as EvalStatus,
    error: (r.error as string | null) ?? null,
    reusedFrom: (r.reused_from as number | null) ?? null,
    fingerprint: (r.fingerprint as string | null) ?? null,
  };
}

const indCols = ['run', 'id', 'infix', 'canonical', 'tree', 'hash', 'size', 'depth', 'n_W', 'n_G', 'n_X', ...OPERATORS.map((o) => `n_${o}`), 'parents', 'origin', 'step', 'fingerprint', 'invalid', 'shared_with', 'created'];

/** The writer for one run; statements are prepared once. */
export class RunStore {
  readonly db: DB;
  readonly runId: number;
  /** The run's settings by name, in order (one for most runs). */
  readonly settings: string[];
  private st: Record<string, import('better-sqlite3').Statement>;
  /** Statements over evaluations' setting and fingerprint, prepared on first use (a run can be created in a file not yet migrated). */
  private readonly evalSql = {
    insEval: `INSERT INTO evaluations (run, individual, setting, fidelity, tokens, ppl, seconds, worker, status, error, reused_from, fingerprint, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    getEval: `SELECT * FROM evaluations WHERE run = ? AND individual = ? AND fidelity = ? AND setting = ?`,
    priorEval: `SELECT e.* FROM evaluations e JOIN individuals i ON i.run = e.run AND i.id = e.individual
      WHERE e.run = ? AND e.setting = ? AND e.fingerprint = ? AND e.fidelity = ? AND e.ppl IS NOT NULL AND e.status IN ('ok', 'reused') AND i.step < ?
      ORDER BY e.id LIMIT 1`,
  };

  private evalStatement(name: keyof RunStore['evalSql']): import('better-sqlite3').Statement {
    return (this.st[name] ??= this.db.prepare(this.evalSql[name]));
  }

  private constructor(db: DB, runId: number) {
    this.db = db;
    this.runId = runId;
    this.settings = runSettingLabels(getRun(db, runId)!.config);
    this.st = {
      // A second write of the same individual (its step completing, or a replay after resume)
      // fills in what the first did not know; a different tree under the same id is refused below.
      insInd: db.prepare(
        `INSERT INTO individuals (${indCols.join(', ')}) VALUES (${indCols.map(() => '?').join(', ')})
         ON CONFLICT (run, id) DO UPDATE SET
           parents = excluded.parents, origin = excluded.origin, step = excluded.step,
           fingerprint = COALESCE(excluded.fingerprint, fingerprint), invalid = COALESCE(excluded.invalid, invalid),
           shared_with = COALESCE(excluded.shared_with, shared_with)
         WHERE hash = excluded.hash AND excluded.origin != 'pending'`,
      ),
      indHash: db.prepare(`SELECT hash FROM individuals WHERE run = ? AND id = ?`),
      setFp: db.prepare(`UPDATE individuals SET fingerprint = ? WHERE run = ? AND id = ?`),
      setInvalid: db.prepare(`UPDATE individuals SET invalid = ?, fitness = ? WHERE run = ? AND id = ?`),
      setFit: db.prepare(`UPDATE individuals SET fitness = ?, fidelity = ? WHERE run = ? AND id = ?`),
      byFp: db.prepare(
        `SELECT id, fitness, fidelity FROM individuals WHERE run = ? AND fingerprint = ? AND fitness IS NOT NULL AND id != ? ORDER BY id LIMIT 1`,
      ),
      ckpt: db.prepare(`INSERT OR REPLACE INTO checkpoints (run, step, state, created) VALUES (?, ?, ?, ?)`),
      dropOldCkpt: db.prepare(`DELETE FROM checkpoints WHERE run = ? AND step < ?`),
      lastCkpt: db.prepare(`SELECT step, state FROM checkpoints WHERE run = ? ORDER BY step DESC LIMIT 1`),
      prog: db.prepare(
        `INSERT OR REPLACE INTO progress (run, step, evaluations, individuals, best, median, elapsed, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      base: db.prepare(
        `INSERT OR REPLACE INTO baselines (run, method, pattern, sparsity, split, tokens, ppl, seconds, error, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      status: db.prepare(`UPDATE runs SET status = ?, error = ?, updated = ? WHERE id = ?`),
      secs: db.prepare(`UPDATE runs SET seconds = ?, updated = ? WHERE id = ?`),
    };
  }

  /** Start a new run. */
  static create(db: DB, info: RunInfo): RunStore {
    const t = now();
    const r = db
      .prepare(
        `INSERT INTO runs (created, updated, config, config_hash, seed, model_path, model_sha256, data_hashes, versions, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')`,
      )
      .run(t, t, stableJson(info.config), configHash(info.config), info.seed, info.modelPath, info.modelSha256, stableJson(info.dataHashes), stableJson(info.versions));
    return new RunStore(db, Number(r.lastInsertRowid));
  }

  /** Reopen an existing run for writing (resume). */
  static open(db: DB, runId: number): RunStore {
    if (!getRun(db, runId)) throw new InputError(`no run ${runId} in this database`);
    return new RunStore(db, runId);
  }

  get run(): RunRow {
    return getRun(this.db, this.runId)!;
  }

  /** Run fn in one transaction (nested calls join it). */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /**
   * Record an individual. Recording the same id twice is allowed (first as 'pending' when it
   * goes to evaluation, then complete when its step ends; again when a resumed run replays
   * the step it was killed in) but only with the same tree: anything else means the replay
   * diverged from the log.
   */
  addIndividual(ind: IndividualInput): void {
    const f = ind.features;
    for (const k of Object.keys(f.ops)) if (!(OPERATORS as readonly string[]).includes(k)) throw new Error(`unknown operator in features: ${k}`);
    const tree = typeof ind.tree === 'string' ? ind.tree : JSON.stringify(ind.tree);
    const res = this.st.insInd!.run(
      this.runId,
      ind.id,
      ind.infix,
      ind.canonical ?? ind.infix,
      tree,
      ind.hash,
      f.size,
      f.depth,
      ...TERMINALS.map((t) => f.terminals[t] ?? 0),
      ...OPERATORS.map((o) => f.ops[o] ?? 0),
      JSON.stringify(ind.parents),
      ind.origin,
      ind.step,
      ind.fingerprint ?? null,
      ind.invalid ?? null,
      ind.sharedWith ?? null,
      now(),
    );
    if (res.changes === 0) {
      const old = this.st.indHash!.pluck().get(this.runId, ind.id) as string;
      if (old !== ind.hash) throw new Error(`individual ${ind.id} replayed as a different tree (${ind.hash} != ${old}): the resumed run diverged from the log`);
    }
    if (ind.invalid) this.st.setInvalid!.run(ind.invalid, Infinity, this.runId, ind.id);
  }

  /** A candidate whose masks equal an evaluated individual's: the evaluation it saved. */
  addMaskDuplicate(d: { hash: string; infix: string; fingerprint: string; step: number }): void {
    this.db
      .prepare(`INSERT OR IGNORE INTO mask_duplicates (run, hash, infix, fingerprint, step, created) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(this.runId, d.hash, d.infix, d.fingerprint, d.step, now());
  }

  setFingerprint(id: number, fingerprint: string): void {
    this.st.setFp!.run(fingerprint, this.runId, id);
  }

  setFitness(id: number, fitness: number, fidelity: Fidelity | null): void {
    this.st.setFit!.run(fitness, fidelity, this.runId, id);
  }

  /** Record a finished evaluation; returns its id. */
  addEvaluation(e: EvaluationInput): number {
    const r = this.evalStatement('insEval').run(
      this.runId,
      e.individual,
      e.setting ?? this.settings[0]!,
      e.fidelity,
      e.tokens,
      e.ppl,
      e.seconds,
      e.worker,
      e.status,
      e.error ?? null,
      e.reusedFrom ?? null,
      e.fingerprint ?? null,
      now(),
    );
    return Number(r.lastInsertRowid);
  }

  /** The evaluation already recorded for an individual at a fidelity and setting (default the first), if any (resume looks here first). */
  evaluation(individual: number, fidelity: Fidelity, setting = this.settings[0]!): EvaluationRow | undefined {
    const r = this.evalStatement('getEval').get(this.runId, individual, fidelity, setting) as Record<string, unknown> | undefined;
    return r && toEval(r);
  }

  /** The first usable evaluation of these masks at this setting and fidelity by an individual made before `step`. */
  priorEvaluation(setting: string, fingerprint: string, fidelity: Fidelity, step: number): EvaluationRow | undefined {
    const r = this.evalStatement('priorEval').get(this.runId, setting, fingerprint, fidelity, step) as Record<string, unknown> | undefined;
    return r && toEval(r);
  }

  /** An earlier individual with the same mask fingerprint and a fitness, if any. */
  sameMask(fingerprint: string, exceptId = -1): { id: number; fitness: number; fidelity: Fidelity | null } | undefined {
    const r = this.st.byFp!.get(this.runId, fingerprint, exceptId) as { id: number; fitness: number; fidelity: Fidelity | null } | undefined;
    return r;
  }

  /** Save the engine state after a completed step; only the latest is kept. */
  saveCheckpoint(step: number, state: unknown): void {
    this.tx(() => {
      this.st.ckpt!.run(this.runId, step, JSON.stringify(state), now());
      this.st.dropOldCkpt!.run(this.runId, step);
    });
  }

  latestCheckpoint<T = unknown>(): { step: number; state: T } | undefined {
    const r = this.st.lastCkpt!.get(this.runId) as { step: number; state: string } | undefined;
    return r && { step: r.step, state: JSON.parse(r.state) as T };
  }

  addProgress(p: ProgressInput): void {
    this.st.prog!.run(this.runId, p.step, p.evaluations, p.individuals, finiteOrNull(p.best), finiteOrNull(p.median), p.elapsed, now());
  }

  addBaseline(b: BaselineInput): void {
    this.st.base!.run(this.runId, b.method, b.pattern, b.sparsity, b.split, b.tokens, b.ppl, b.seconds, b.error ?? null, now());
  }

  baselines(): BaselineInput[] {
    return this.db.prepare(`SELECT method, pattern, sparsity, split, tokens, ppl, seconds, error FROM baselines WHERE run = ? ORDER BY ppl`).all(this.runId) as BaselineInput[];
  }

  setStatus(status: RunStatus, error: string | null = null): void {
    this.st.status!.run(status, error, now(), this.runId);
  }

  /** Wall time spent on the run over all its sessions. */
  setSeconds(s: number): void {
    this.st.secs!.run(s, now(), this.runId);
  }

  /** Perplexity evaluations actually paid for (not reused), by fidelity. */
  paidEvaluations(): { short: number; full: number } {
    const rows = this.db
      .prepare(`SELECT fidelity, COUNT(*) n FROM evaluations WHERE run = ? AND status != 'reused' GROUP BY fidelity`)
      .all(this.runId) as { fidelity: Fidelity; n: number }[];
    const out = { short: 0, full: 0 };
    for (const r of rows) out[r.fidelity] = r.n;
    return out;
  }

  individualCount(): number {
    return this.db.prepare(`SELECT COUNT(*) FROM individuals WHERE run = ?`).pluck().get(this.runId) as number;
  }
  /** The earliest individual with these masks but another tree, if any. */
  firstWithFingerprint(fingerprint: string, exceptHash: string): number | undefined {
    return this.db
      .prepare(`SELECT id FROM individuals WHERE run = ? AND fingerprint = ? AND hash != ? ORDER BY id LIMIT 1`)
      .pluck()
      .get(this.runId, fingerprint, exceptHash) as number | undefined;
  }

  fingerprintOf(id: number): string | null {
    return (this.db.prepare(`SELECT fingerprint FROM individuals WHERE run = ? AND id = ?`).pluck().get(this.runId, id) as string | null | undefined) ?? null;
  }

  /** An individual's fitness, the budget it came from, and why it is unusable (if so); fitness is null until set. */
  fitnessOf(id: number): { fitness: number | null; fidelity: Fidelity | null; invalid: string | null } | undefined {
    return this.db.prepare(`SELECT fitness, fidelity, invalid FROM individuals WHERE run = ? AND id = ?`).get(this.runId, id) as
      | { fitness: number | null; fidelity: Fidelity | null; invalid: string | null }
      | undefined;
  }

  /**
   * Usable perplexities at a budget by individual, combined over the run's settings (their
   * geometric mean), for individuals measured at every setting. A run of one setting counts
   * only paid evaluations (a reused one repeats an earlier individual's), as it always did;
   * several settings count reused ones too (a candidate may reuse some settings, pay others).
   */
  private combined(fidelity: Fidelity, beforeStep = Infinity): Map<number, number> {
    const k = this.settings.length;
    const rows = this.db
      .prepare(
        `SELECT e.individual, e.ppl FROM evaluations e JOIN individuals i ON i.run = e.run AND i.id = e.individual
         WHERE e.run = ? AND e.fidelity = ? AND e.ppl IS NOT NULL AND e.status IN (${k === 1 ? "'ok'" : "'ok', 'reused'"}) AND i.step < ?
         ORDER BY e.individual, e.setting`,
      )
      .all(this.runId, fidelity, beforeStep === Infinity ? Number.MAX_SAFE_INTEGER : beforeStep) as { individual: number; ppl: number }[];
    const by = new Map<number, number[]>();
    for (const r of rows) by.set(r.individual, [...(by.get(r.individual) ?? []), r.ppl]);
    const out = new Map<number, number>();
    for (const [id, xs] of by) if (xs.length === k) out.set(id, geometricMean(xs));
    return out;
  }

  /** Best short-budget perplexity (over all settings) of the individuals made before a step. */
  bestShortPplBefore(step: number): number | null {
    let best: number | null = null;
    for (const g of this.combined('short', step).values()) if (best === null || g < best) best = g;
    return best;
  }

  /** Short and full perplexity (over all settings) of the candidate with the best short perplexity among those run at both budgets. */
  bestShortWithFull(): { short: number; full: number } | undefined {
    const full = this.combined('full');
    let best: { id: number; short: number; full: number } | undefined;
    for (const [id, short] of this.combined('short')) {
      const f = full.get(id);
      if (f !== undefined && (!best || short < best.short || (short === best.short && id < best.id))) best = { id, short, full: f };
    }
    return best && { short: best.short, full: best.full };
  }

  /** The individual with the lowest finite fitness (ties: the earliest). */
  best(): { id: number; infix: string; fitness: number; fidelity: Fidelity | null } | undefined {
    return this.db
      .prepare(`SELECT id, infix, fitness, fidelity FROM individuals WHERE run = ? AND fitness IS NOT NULL AND fitness < 1e308 ORDER BY fitness, id LIMIT 1`)
      .get(this.runId) as { id: number; infix: string; fitness: number; fidelity: Fidelity | null } | undefined;
  }

  /** Evaluations by status and fidelity. */
  evaluationCounts(): { status: EvalStatus; fidelity: Fidelity; n: number }[] {
    return this.db.prepare(`SELECT status, fidelity, COUNT(*) n FROM evaluations WHERE run = ? GROUP BY status, fidelity`).all(this.runId) as { status: EvalStatus; fidelity: Fidelity; n: number }[];
  }

  maskDuplicateCount(): number {
    return this.db.prepare(`SELECT COUNT(*) FROM mask_duplicates WHERE run = ?`).pluck().get(this.runId) as number;
  }
}


function finiteOrNull(x: number | null): number | null {
  return x === null || !Number.isFinite(x) ? null : x;
}
