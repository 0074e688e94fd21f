/**
 * Read-only queries behind `symprune report` and `symprune export`.
 */
import { InputError } from '../errors.ts';
import { OPERATORS, TERMINALS, type DB } from './schema.ts';
import { getRun, listRuns, type BaselineInput, type ProgressInput, type RunRow } from './store.ts';
import { geometricMean, runSettingLabels, settingLabelOf } from './setting.ts';

/** SQL: the geometric mean of a column over a group (one value exactly as it is), as geometricMean. */
const geoSql = (x: string): string => `CASE WHEN COUNT(${x}) = 1 THEN MAX(${x}) ELSE EXP(AVG(LN(${x}))) END`;

/** How many settings the run has (a candidate's perplexity at a budget combines that many evaluations). */
function settingCount(db: DB, run: number): number {
  return runSettingLabels(getRun(db, run)?.config ?? {}).length;
}

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
                ${geoSql("CASE WHEN fidelity = 'short' THEN ppl END")} AS short_ppl,
                ${geoSql("CASE WHEN fidelity = 'full' THEN ppl END")} AS full_ppl
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

/**
 * The baselines as a candidate's fitness is measured: for a run of several settings, each
 * method's geometric mean over them (pattern `geomean`, sparsity their mean), so they compare
 * with the fitness like for like; the dense model as it is. Per setting: baselineRows.
 */
export function baselines(db: DB, run: number): BaselineInput[] {
  const rows = baselineRows(db, run);
  const config = getRun(db, run)?.config ?? {};
  const labels = runSettingLabels(config);
  if (labels.length === 1) return rows;
  const list = config.settings as { sparsity: number }[];
  const meanSparsity = list.reduce((a, x) => a + x.sparsity, 0) / list.length;
  const methods = [...new Set(rows.filter((b) => b.method !== 'dense').map((b) => b.method))];
  const combined = methods.map((method): BaselineInput => {
    const at = labels.map((l) => rows.find((b) => b.method === method && b.sparsity !== 0 && settingLabelOf(b.sparsity, b.pattern) === l));
    const missing = labels.find((_, i) => !at[i] || at[i]!.ppl === null);
    const got = at.filter((b): b is BaselineInput => !!b);
    return {
      method,
      pattern: 'geomean',
      sparsity: meanSparsity,
      split: got[0]!.split,
      tokens: got.reduce((a, b) => a + b.tokens, 0),
      ppl: missing === undefined ? geometricMean(got.map((b) => b.ppl!)) : null,
      seconds: got.reduce((a, b) => a + b.seconds, 0),
      error: missing === undefined ? null : `at ${missing}: ${at[labels.indexOf(missing)]?.error ?? 'not measured'}`,
    };
  });
  const byPpl = (a: BaselineInput, b: BaselineInput): number => Number(a.ppl === null) - Number(b.ppl === null) || (a.ppl ?? 0) - (b.ppl ?? 0) || (a.method < b.method ? -1 : a.method > b.method ? 1 : 0);
  return [...rows.filter((b) => b.method === 'dense'), ...combined].sort(byPpl);
}

/** Every baseline row of a run: each method at each setting, and the dense model. */
export function baselineRows(db: DB, run: number): BaselineInput[] {
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
      `WITH e AS (
         SELECT individual, ${geoSql('ppl')} AS ppl, COUNT(*) AS n FROM evaluations
         WHERE run = @run AND fidelity = 'short' AND ppl IS NOT NULL AND status IN ('ok', 'reused') GROUP BY individual)
       SELECT i.id, e.ppl, ${cols.map((c) => `i.${c}`).join(', ')}
       FROM individuals i JOIN e ON e.individual = i.id
       WHERE i.run = @run AND e.n = @k ORDER BY i.id`,
    )
    .all({ run, k: settingCount(db, run) }) as Record<string, number>[];
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
  const per = (fidelity: string): string =>
    `SELECT individual, ${geoSql('ppl')} AS ppl, COUNT(*) AS n FROM evaluations WHERE run = @run AND fidelity = '${fidelity}' AND status = 'ok' AND ppl IS NOT NULL GROUP BY individual`;
  return db
    .prepare(
      `SELECT s.individual AS id, s.ppl AS short, f.ppl AS full
       FROM (${per('short')}) s JOIN (${per('full')}) f ON f.individual = s.individual
       WHERE s.n = @k AND f.n = @k
       ORDER BY s.individual`,
    )
    .all({ run, k: settingCount(db, run) }) as { id: number; short: number; full: number }[];
}

export interface EvaluationCounts {
  individuals: number;
  invalid: number;
  /** Perplexity evaluations paid for, by fidelity. */
  paid: { short: number; full: number };
  /** Individuals that took the fitness of an equivalent one (same canonical form or masks): no perplexity run. */
  reused: number;
  /** Runs of several settings: perplexities at one setting taken from an earlier individual with equal masks there (the candidate paid the others). */
  settingReuses?: number;
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
    // An individual took another's fitness when all its short evaluations are reused (one for a run of one setting).
    reused: one(`SELECT COUNT(*) FROM (SELECT individual FROM evaluations WHERE run = ? AND fidelity = 'short' GROUP BY individual HAVING SUM(status = 'reused') = COUNT(*))`),
    maskDuplicates: one(`SELECT COUNT(*) FROM mask_duplicates WHERE run = ?`),
    failed: { error: 0, timeout: 0, crash: 0 },
    seconds: r.seconds,
  };
  if (settingCount(db, run) > 1)
    out.settingReuses = one(
      `SELECT COUNT(*) FROM evaluations e WHERE e.run = ? AND e.status = 'reused' AND EXISTS (SELECT 1 FROM evaluations p WHERE p.run = e.run AND p.individual = e.individual AND p.status != 'reused')`,
    );
  for (const b of by) {
    if (b.status === 'ok') out.paid[b.fidelity] += b.n;
    else if (b.status === 'reused') continue;
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
