/**
 * Read-only queries behind the dashboard that `report` does not already answer: a run's
 * summary for the runs table, every tree's size against its fitness (around the Pareto front), recent
 * activity, one candidate with its lineage, evaluations and mask-sharers, and a job queue's
 * workers when the run used one. Every function only reads.
 */
import { hasColumn, hasTable, type DB } from '../store/schema.ts';
import { baselines, evaluationCounts, FEATURES, featureRows, leaderboard, type EvaluationCounts } from '../store/queries.ts';
import { getRun, listRuns, type RunRow } from '../store/store.ts';
import { paretoFront, type ParetoPoint } from '../store/pareto.ts';
import { parseMetric } from '../search-space/parse.ts';
import { toLatex } from '../search-space/print.ts';

type Row = Record<string, unknown>;

/** LaTeX of a stored infix, or null when it does not parse (a damaged or crafted database). */
export function latexOf(infix: string): string | null {
  try {
    return toLatex(parseMetric(infix));
  } catch {
    return null;
  }
}

export interface RunSummary {
  run: number;
  status: string;
  error: string | null;
  created: string;
  /** Newest write of the run (an evaluation or a step): a "running" run that stopped writing long ago died. */
  lastWrite: string;
  seed: number;
  modelPath: string;
  modelSha256: string;
  config: Record<string, unknown>;
  versions: Record<string, string>;
  seconds: number;
  counts: EvaluationCounts;
  step: number | null;
  /** Steps the run was set to make (as the search computes them), for a progress fraction. */
  totalSteps: number | null;
  /** Paid perplexity evaluations per minute over the whole run, and over its last 100. */
  perMinute: number | null;
  recentPerMinute: number | null;
  best: { id: number; infix: string; latex: string | null; fitness: number; fullPpl: number | null } | null;
  /** The best baseline other than the dense model, on the fitness data. */
  bestBaseline: { method: string; ppl: number } | null;
  dense: number | null;
  /** The job queue's workers the run heard from, by state; null when it used none (local threads, or a log older than the workers table). */
  workers: { total: number; busy: number; idle: number; gone: number } | null;
}

export function runSummaries(db: DB): RunSummary[] {
  return listRuns(db).map((r) => runSummary(db, r));
}

export function runSummaryById(db: DB, run: number): RunSummary | null {
  const r = getRun(db, run);
  return r ? runSummary(db, r) : null;
}

function runSummary(db: DB, r: RunRow): RunSummary {
  const counts = evaluationCounts(db, r.id);
  const paid = counts.paid.short + counts.paid.full;
  const lastEval = db.prepare(`SELECT MAX(created) FROM evaluations WHERE run = ?`).pluck().get(r.id) as string | null;
  const step = db.prepare(`SELECT MAX(step) FROM progress WHERE run = ?`).pluck().get(r.id) as number | null;
  const top = leaderboard(db, r.id, 1)[0];
  const base = baselines(db, r.id).filter((b) => b.ppl !== null && b.split === String(r.config.fitnessData ?? b.split));
  const best = base.filter((b) => b.method !== 'dense')[0];
  return {
    run: r.id,
    status: r.status,
    error: r.error,
    created: r.created,
    lastWrite: lastEval && lastEval > r.updated ? lastEval : r.updated,
    seed: r.seed,
    modelPath: r.modelPath,
    modelSha256: r.modelSha256,
    config: r.config,
    versions: r.versions,
    seconds: r.seconds,
    counts,
    step,
    totalSteps: totalSteps(r.config),
    perMinute: r.seconds > 0 ? paid / (r.seconds / 60) : null,
    recentPerMinute: recentRate(db, r.id),
    best: top ? { id: top.id, infix: top.infix, latex: latexOf(top.infix), fitness: top.fitness, fullPpl: top.fullPpl } : null,
    bestBaseline: best ? { method: best.method, ppl: best.ppl! } : null,
    dense: base.find((b) => b.method === 'dense')?.ppl ?? null,
    workers: workerCounts(db, r.id),
  };
}

function workerCounts(db: DB, run: number): RunSummary['workers'] {
  if (!hasTable(db, 'workers')) return null;
  const c = db
    .prepare(`SELECT COUNT(*) AS total, SUM(state = 'busy') AS busy, SUM(state = 'idle') AS idle, SUM(state = 'gone') AS gone FROM workers WHERE run = ?`)
    .get(run) as { total: number; busy: number | null; idle: number | null; gone: number | null };
  return c.total ? { total: c.total, busy: c.busy ?? 0, idle: c.idle ?? 0, gone: c.gone ?? 0 } : null;
}

/** The step count `search` sets itself (src/search/evolve.ts): initial population, then the iterations or generations, in batches. */
function totalSteps(c: Record<string, unknown>): number | null {
  const pop = Number(c.population);
  const batch = Number(c.batch);
  if (!(pop > 0 && batch > 0)) return null;
  if (c.mode === 'generational' && Number(c.generations) > 0) return Math.ceil((pop / batch) * (1 + Number(c.generations)));
  if (Number(c.iterations) > 0) return Math.ceil(pop / batch) + Math.ceil(Number(c.iterations) / batch);
  return null;
}

/** Paid evaluations per minute between the oldest and newest of the last 100: the current pace of a live run. */
function recentRate(db: DB, run: number): number | null {
  const t = db
    .prepare(`SELECT created FROM evaluations WHERE run = ? AND status != 'reused' ORDER BY id DESC LIMIT 100`)
    .pluck()
    .all(run) as string[];
  if (t.length < 2) return null;
  const ms = Date.parse(t[0]!) - Date.parse(t[t.length - 1]!);
  return ms > 0 ? ((t.length - 1) / ms) * 60000 : null;
}

const PER_SIZE = 100;

export interface SizePoint {
  id: number;
  size: number;
  fitness: number;
  infix: string;
}

/**
 * Individuals with a finite fitness as (tree size, fitness), the best PER_SIZE of each size
 * (a long run has thousands; the plot needs the region above the front, not every point),
 * and the Pareto front over all of them (store/pareto.ts).
 */
export function paretoPlot(db: DB, run: number): { points: SizePoint[]; front: ParetoPoint[] } {
  const points = db
    .prepare(
      `SELECT id, size, fitness, infix FROM (
         SELECT id, size, fitness, infix, ROW_NUMBER() OVER (PARTITION BY size ORDER BY fitness, id) AS nth
         FROM individuals WHERE run = ? AND fitness IS NOT NULL AND fitness < 1e308)
       WHERE nth <= ? ORDER BY size, fitness, id`,
    )
    .all(run, PER_SIZE) as SizePoint[];
  return { points, front: paretoFront(db, run) };
}

/**
 * One tree feature (a name of FEATURES) against short-budget perplexity, for the scatter:
 * the rows of featureRows (store/queries.ts) with only the column the plot needs.
 */
export function featurePoints(db: DB, run: number, feature: string): { id: number; x: number; ppl: number }[] {
  if (!(FEATURES as readonly string[]).includes(feature)) throw new Error(`unknown feature ${feature}`);
  // featureRows gives one row per individual (a run of several settings: their geometric mean).
  return featureRows(db, run).map((r) => ({ id: r.id, x: r.features[feature]!, ppl: r.ppl }));
}

/** The newest individuals, newest first: what the search is doing now. */
export function recentIndividuals(db: DB, run: number, n: number): Row[] {
  return db
    .prepare(`SELECT id, infix, origin, step, size, fitness, fidelity, invalid, shared_with FROM individuals WHERE run = ? ORDER BY id DESC LIMIT ?`)
    .all(run, n) as Row[];
}

/** Failed evaluations (newest first) and the reasons trees were unusable (most common first). */
export function failures(db: DB, run: number, n: number): { evaluations: Row[]; invalid: Row[] } {
  return {
    evaluations: db
      .prepare(`SELECT id, individual, fidelity, status, error, worker, seconds, created FROM evaluations WHERE run = ? AND status IN ('error', 'timeout', 'crash') ORDER BY id DESC LIMIT ?`)
      .all(run, n) as Row[],
    invalid: db
      .prepare(`SELECT invalid AS reason, COUNT(*) AS n, MIN(id) AS example FROM individuals WHERE run = ? AND invalid IS NOT NULL GROUP BY invalid ORDER BY n DESC, reason LIMIT ?`)
      .all(run, n) as Row[],
  };
}

/** Paid evaluations by worker: how the load spread and how fast each worker is. */
export function workerLoad(db: DB, run: number): Row[] {
  return db
    .prepare(
      `SELECT worker, COUNT(*) AS evaluations, SUM(fidelity = 'short') AS short, SUM(fidelity = 'full') AS full,
              SUM(status IN ('error', 'timeout', 'crash')) AS failed, SUM(seconds) AS seconds,
              AVG(CASE WHEN fidelity = 'short' THEN seconds END) AS short_mean, AVG(CASE WHEN fidelity = 'full' THEN seconds END) AS full_mean
       FROM evaluations WHERE run = ? AND status != 'reused' GROUP BY worker ORDER BY worker`,
    )
    .all(run) as Row[];
}

export interface Candidate {
  individual: Row & { id: number; infix: string; latex: string | null; tree: unknown; parents: number[] };
  /** 1 + the number of individuals with a strictly better fitness. */
  rank: number | null;
  parents: Row[];
  /** Grandparents and further back (generation 2 to ANCESTRY), each listed once, nearest first. */
  ancestors: Row[];
  children: Row[];
  evaluations: Row[];
  /** Individuals with the same mask fingerprint, candidates dropped for it, and the same canonical form. */
  sameMasks: Row[];
  maskDuplicates: Row[];
  sameCanonical: Row[];
  /** Individuals that took their fitness from this one. */
  sharedBy: Row[];
}

const brief = `id, infix, fitness, fidelity, origin, step, size`;
/** How many generations back the candidate page traces. */
const ANCESTRY = 4;

export function candidate(db: DB, run: number, id: number): Candidate | null {
  const ind = db.prepare(`SELECT * FROM individuals WHERE run = ? AND id = ?`).get(run, id) as Row | undefined;
  if (!ind) return null;
  const parents = idList(ind.parents);
  const fit = ind.fitness as number | null;
  const rank =
    fit === null || !Number.isFinite(fit) ? null : 1 + (db.prepare(`SELECT COUNT(*) FROM individuals WHERE run = ? AND fitness < ?`).pluck().get(run, fit) as number);
  // Children: a substring test narrows the scan, the parsed list decides (a damaged list is skipped, not fatal).
  const children = (db.prepare(`SELECT ${brief}, parents FROM individuals WHERE run = ? AND instr(parents, ?) > 0 ORDER BY id`).all(run, String(id)) as Row[])
    .filter((c) => idList(c.parents).includes(id))
    .map(({ parents: _p, ...c }) => c);
  const fp = ind.fingerprint as string | null;
  const one = db.prepare(`SELECT ${brief}, parents FROM individuals WHERE run = ? AND id = ?`);
  const ancestors: Row[] = [];
  const seen = new Set([id, ...parents]);
  let frontier = parents;
  for (let generation = 2; generation <= ANCESTRY && frontier.length; generation++) {
    const up = frontier.flatMap((p) => idList((one.get(run, p) as Row | undefined)?.parents));
    frontier = [...new Set(up)].filter((a) => !seen.has(a));
    for (const a of frontier) {
      seen.add(a);
      const { parents: _p, ...row } = (one.get(run, a) as Row | undefined) ?? { id: a };
      ancestors.push({ generation, ...row });
    }
  }
  return {
    individual: { ...ind, id, infix: String(ind.infix), latex: latexOf(String(ind.infix)), tree: jsonOrNull(ind.tree), parents },
    rank,
    parents: parents.length ? (db.prepare(`SELECT ${brief} FROM individuals WHERE run = ? AND id IN (${parents.map(() => '?').join(',')}) ORDER BY id`).all(run, ...parents) as Row[]) : [],
    ancestors,
    children,
    evaluations: db
      .prepare(
        `SELECT e.id, ${hasColumn(db, 'evaluations', 'setting') ? 'e.setting' : 'NULL AS setting'}, e.fidelity, e.tokens, e.ppl, e.seconds, e.worker, e.status, e.error, e.reused_from, s.individual AS reused_from_individual, e.created
         FROM evaluations e LEFT JOIN evaluations s ON s.id = e.reused_from
         WHERE e.run = ? AND e.individual = ? ORDER BY e.id`,
      )
      .all(run, id) as Row[],
    sameMasks: fp === null ? [] : (db.prepare(`SELECT ${brief} FROM individuals WHERE run = ? AND fingerprint = ? AND id != ? ORDER BY id LIMIT 500`).all(run, fp, id) as Row[]),
    maskDuplicates: fp === null ? [] : (db.prepare(`SELECT hash, infix, step FROM mask_duplicates WHERE run = ? AND fingerprint = ? ORDER BY step, hash LIMIT 500`).all(run, fp) as Row[]),
    sameCanonical: db.prepare(`SELECT ${brief} FROM individuals WHERE run = ? AND hash = ? AND id != ? ORDER BY id LIMIT 500`).all(run, ind.hash, id) as Row[],
    sharedBy: db.prepare(`SELECT ${brief} FROM individuals WHERE run = ? AND shared_with = ? ORDER BY id LIMIT 500`).all(run, id) as Row[],
  };
}

function jsonOrNull(s: unknown): unknown {
  try {
    return JSON.parse(String(s));
  } catch {
    return null;
  }
}

function idList(s: unknown): number[] {
  const v = jsonOrNull(s);
  return Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x)) : [];
}

export interface QueueWorkerRow {
  worker: string;
  host: string;
  pid: number | null;
  threads: number | null;
  device: string | null;
  firstSeen: string;
  lastSeen: string;
  jobsDone: number;
  jobsFailed: number;
  evaluations: number;
  /** Time spent on the run's jobs. */
  seconds: number;
  state: string;
  /** Perplexity evaluations per minute between its first and last sighting (null before they differ). */
  perMinute: number | null;
}

/** The job queue's workers a run heard from (the coordinator's `workers` table); none for a local run or an older log. */
export function queueWorkers(db: DB, run: number): QueueWorkerRow[] {
  if (!hasTable(db, 'workers')) return [];
  const rows = db.prepare(`SELECT * FROM workers WHERE run = ? ORDER BY worker LIMIT 1000`).all(run) as Row[];
  return rows.map((r) => {
    const span = (Date.parse(String(r.last_seen)) - Date.parse(String(r.first_seen))) / 60000;
    return {
      worker: String(r.worker),
      host: String(r.host),
      pid: r.pid as number | null,
      threads: r.threads as number | null,
      device: r.device as string | null,
      firstSeen: String(r.first_seen),
      lastSeen: String(r.last_seen),
      jobsDone: r.jobs_done as number,
      jobsFailed: r.jobs_failed as number,
      evaluations: r.evaluations as number,
      seconds: r.seconds as number,
      state: String(r.state),
      perMinute: span > 0 ? (r.evaluations as number) / span : null,
    };
  });
}
