/**
 * Read-only queries behind `symprune report` and `symprune export`.
 */
import { InputError } from '../errors.ts';
import { OPERATORS, TERMINALS, type DB } from './schema.ts';
import { getRun, listRuns, type BaselineInput, type ProgressInput, type RunRow } from './store.ts';

/** The run a report is about: the given id, or the only/latest run in the file. */
export function pickRun(db: DB, path: string, id?: number): RunRow {
  if (id !== undefined) {
    const r = getRun(db, id);
    if (!r) throw new InputError(`${path}: no run ${id} (runs: ${listRuns(db).map((x) => x.id).join(', ') || 'none'})`);
    return r;
  }
  const runs = listRuns(db);
  if (runs.length === 0) throw new InputError(`${path}: holds no run yet`);
  return runs[runs.length - 1]!;
}

export interface RankedIndividual {
  rank: number;
  id: number;
  infix: string;
  tree: unknown;
  fitness: number;
  fidelity: string | null;
  shortPpl: number | null;
  fullPpl: number | null;
  size: number;
  depth: number;
  step: number;
  origin: string;
  fingerprint: string | null;
  /** Other individuals with the same masks (and so the same fitness). */
  equivalents: number;
}

/**
 * The best individuals by fitness, one per mask fingerprint (the earliest), ties broken by id.
 * Rank 1 is the best.
 */
export function leaderboard(db: DB, run: number, k: number): RankedIndividual[] {
  const rows = db
    .prepare(
      `WITH ev AS (
         SELECT individual,
                MAX(CASE WHEN fidelity = 'short' THEN ppl END) AS short_ppl,
                MAX(CASE WHEN fidelity = 'full' THEN ppl END) AS full_ppl
         FROM evaluations WHERE run = @run GROUP BY individual),
       firsts AS (
         SELECT i.*, ROW_NUMBER() OVER (PARTITION BY COALESCE(i.fingerprint, 'id:' || i.id) ORDER BY i.id) AS nth,
                COUNT(*) OVER (PARTITION BY COALESCE(i.fingerprint, 'id:' || i.id)) AS same
         FROM individuals i WHERE i.run = @run AND i.fitness IS NOT NULL AND i.fitness < 1e308)
       SELECT f.id, f.infix, f.tree, f.fitness, f.fidelity, f.size, f.depth, f.step, f.origin, f.fingerprint, f.same,
              ev.short_ppl, ev.full_ppl
       FROM firsts f LEFT JOIN ev ON ev.individual = f.id
       WHERE f.nth = 1
       ORDER BY f.fitness, f.id
       LIMIT @k`,
    )
    .all({ run, k }) as Record<string, unknown>[];
  return rows.map((r, i) => ({
    rank: i + 1,
    id: r.id as number,
    infix: r.infix as string,
    tree: JSON.parse(r.tree as string),
    fitness: r.fitness as number,
    fidelity: (r.fidelity as string | null) ?? null,
    shortPpl: (r.short_ppl as number | null) ?? null,
    fullPpl: (r.full_ppl as number | null) ?? null,
    size: r.size as number,
    depth: r.depth as number,
    step: r.step as number,
    origin: r.origin as string,
    fingerprint: (r.fingerprint as string | null) ?? null,
    equivalents: (r.same as number) - 1,
  }));
}

/** One progress row, as the search wrote it. */
export type CurvePoint = ProgressInput;

export function curve(db: DB, run: number): CurvePoint[] {
  return db.prepare(`SELECT step, evaluations, individuals, best, median, elapsed FROM progress WHERE run = ? ORDER BY step`).all(run) as CurvePoint[];
}

export function baselines(db: DB, run: number): BaselineInput[] {
  return db
    .prepare(`SELECT method, pattern, sparsity, split, tokens, ppl, seconds, error FROM baselines WHERE run = ? ORDER BY ppl IS NULL, ppl, method`)
    .all(run) as BaselineInput[];
}

/**
 * Feature names, in report order: shape, use of each terminal, its count, use of each
 * operator (1 when the tree holds it at least once).
 */
export const FEATURES = ['size', 'depth', ...TERMINALS.map((t) => `uses_${t}`), ...TERMINALS.map((t) => `n_${t}`), ...OPERATORS.map((o) => `uses_${o}`)] as const;

export interface FeatureRow {
  id: number;
  ppl: number;
  features: Record<string, number>;
}

/**
 * Every individual with a short-budget perplexity (paid or reused) and its tree features.
 * The short budget is the one every evaluated candidate has, on the same tokens, so these
 * perplexities are comparable with each other.
 */
export function featureRows(db: DB, run: number): FeatureRow[] {
  const cols = ['size', 'depth', ...TERMINALS.map((t) => `n_${t}`), ...OPERATORS.map((o) => `n_${o}`)];
  const rows = db
    .prepare(
      `SELECT i.id, e.ppl, ${cols.map((c) => `i.${c}`).join(', ')}
       FROM individuals i JOIN evaluations e ON e.run = i.run AND e.individual = i.id AND e.fidelity = 'short'
       WHERE i.run = ? AND e.ppl IS NOT NULL AND e.status IN ('ok', 'reused') ORDER BY i.id`,
    )
    .all(run) as Record<string, number>[];
  return rows
    .filter((r) => Number.isFinite(r.ppl))
    .map((r) => {
      const features: Record<string, number> = {};
      for (const c of cols) features[c] = r[c]!;
      for (const t of TERMINALS) features[`uses_${t}`] = r[`n_${t}`]! > 0 ? 1 : 0;
      for (const o of OPERATORS) features[`uses_${o}`] = r[`n_${o}`]! > 0 ? 1 : 0;
      return { id: r.id!, ppl: r.ppl!, features };
    });
}

/** Individuals evaluated at both budgets: how well the short budget predicts the full one. */
export function fidelityPairs(db: DB, run: number): { id: number; short: number; full: number }[] {
  return db
    .prepare(
      `SELECT s.individual AS id, s.ppl AS short, f.ppl AS full
       FROM evaluations s JOIN evaluations f ON f.run = s.run AND f.individual = s.individual AND f.fidelity = 'full'
       WHERE s.run = ? AND s.fidelity = 'short' AND s.ppl IS NOT NULL AND f.ppl IS NOT NULL
         AND s.status = 'ok' AND f.status = 'ok'
       ORDER BY s.individual`,
    )
    .all(run) as { id: number; short: number; full: number }[];
}

export interface EvaluationCounts {
  individuals: number;
  invalid: number;
  /** Perplexity evaluations paid for, by fidelity. */
  paid: { short: number; full: number };
  /** Individuals that took the fitness of an equivalent one (same canonical form or masks): no perplexity run. */
  reused: number;
  /** Candidate trees dropped because their masks equalled an evaluated individual's (each saved a perplexity run). */
  maskDuplicates: number;
  failed: { error: number; timeout: number; crash: number };
  seconds: number;
}

export function evaluationCounts(db: DB, run: number): EvaluationCounts {
  const r = getRun(db, run)!;
  const one = (sql: string): number => db.prepare(sql).pluck().get(run) as number;
  const by = db.prepare(`SELECT status, fidelity, COUNT(*) n FROM evaluations WHERE run = ? GROUP BY status, fidelity`).all(run) as { status: string; fidelity: 'short' | 'full'; n: number }[];
  const out: EvaluationCounts = {
    individuals: one(`SELECT COUNT(*) FROM individuals WHERE run = ?`),
    invalid: one(`SELECT COUNT(*) FROM individuals WHERE run = ? AND invalid IS NOT NULL`),
    paid: { short: 0, full: 0 },
    reused: 0,
    maskDuplicates: one(`SELECT COUNT(*) FROM mask_duplicates WHERE run = ?`),
    failed: { error: 0, timeout: 0, crash: 0 },
    seconds: r.seconds,
  };
  for (const b of by) {
    if (b.status === 'ok') out.paid[b.fidelity] += b.n;
    else if (b.status === 'reused') out.reused += b.fidelity === 'short' ? b.n : 0;
    else out.failed[b.status as 'error' | 'timeout' | 'crash'] += b.n;
  }
  return out;
}

/** One individual by rank in the leaderboard (1 = best). */
export function individualAtRank(db: DB, path: string, run: number, rank: number): RankedIndividual {
  if (!Number.isInteger(rank) || rank < 1) throw new InputError(`--rank must be a positive integer, got ${rank}`);
  const board = leaderboard(db, run, rank);
  if (board.length < rank) throw new InputError(`${path}: run ${run} has ${board.length} evaluated individual${board.length === 1 ? '' : 's'} with distinct masks, no rank ${rank}`);
  return board[rank - 1]!;
}
