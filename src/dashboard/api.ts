/**
 * The dashboard's JSON API. Each answer is read inside one read transaction, so it is a
 * consistent snapshot while a search commits; the scatter is cached until its database
 * changes, and the correlation analysis comes from a worker thread (analysis.ts).
 */
import type { DB } from '../store/schema.ts';
import { baselines, curve, FEATURES, fidelityPairs, leaderboard } from '../store/queries.ts';
import { candidate, failures, featurePoints, latexOf, paretoPlot, queueWorkers, recentIndividuals, runSummaries, runSummaryById, workerLoad } from './queries.ts';
import type { Source } from './sources.ts';
import type { Analyses } from './analysis.ts';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const LEADERBOARD = 20;
const RECENT = 15;

type Params = URLSearchParams;

/** The answer to GET /api/<name>?<params>. */
export function apiAnswer(sources: readonly Source[], name: string, params: Params, cache: AnswerCache, analyses: Analyses): unknown {
  switch (name) {
    case 'overview':
      return sources.map((s) => ({ db: s.key, label: s.label, path: s.path, version: s.version, ...snapshot(s.db, () => ({ runs: runSummaries(s.db) })) }));
    case 'run': {
      const [s, run] = sourceRun(sources, params);
      return runAnswer(s, run, analyses);
    }
    case 'scatter': {
      const [s, run] = sourceRun(sources, params);
      const feature = params.get('feature') ?? '';
      if (!(FEATURES as readonly string[]).includes(feature)) throw new HttpError(400, `feature must be one of ${FEATURES.join(', ')}`);
      return cache.get(s, `scatter ${run} ${feature}`, () =>
        snapshot(s.db, () => ({ feature, points: featurePoints(s.db, run, feature) })),
      );
    }
    case 'candidate': {
      const [s, run] = sourceRun(sources, params);
      const id = intParam(params, 'id');
      const c = snapshot(s.db, () => candidate(s.db, run, id));
      if (!c) throw new HttpError(404, `run ${run} has no individual ${id}`);
      return { db: s.key, label: s.label, run, ...c };
    }
    case 'compare':
      return compareAnswer(sources, params.get('runs') ?? '');
    default:
      throw new HttpError(404, `no API ${name}`);
  }
}

function runAnswer(s: Source, run: number, analyses: Analyses): unknown {
  const { analysis, error } = analyses.latest(s, run);
  return snapshot(s.db, () => ({
    db: s.key,
    label: s.label,
    analysis: analysis && { correlations: analysis.correlations, principles: analysis.principles, current: analysis.version === s.version, ms: analysis.ms },
    analysisError: error,
    summary: runSummaryById(s.db, run),
    leaderboard: leaderboard(s.db, run, LEADERBOARD).map((b) => ({ ...b, latex: latexOf(b.infix) })),
    baselines: baselines(s.db, run),
    curve: curve(s.db, run),
    features: FEATURES,
    pareto: paretoPlot(s.db, run),
    fidelity: fidelityPairs(s.db, run),
    recent: recentIndividuals(s.db, run, RECENT),
    failures: failures(s.db, run, RECENT),
    workerLoad: workerLoad(s.db, run),
    workers: queueWorkers(s.db, run),
  }));
}

/** Several runs, possibly from different databases: summaries and curves to lay side by side. */
function compareAnswer(sources: readonly Source[], spec: string): unknown {
  const pairs = spec.split(',').filter(Boolean);
  if (pairs.length === 0 || pairs.length > 12) throw new HttpError(400, 'runs must list 1 to 12 DB:RUN pairs');
  return pairs.map((p) => {
    const m = /^(\d+):(\d+)$/.exec(p);
    if (!m) throw new HttpError(400, `runs: ${p} is not DB:RUN`);
    const [s, run] = sourceRun(sources, new URLSearchParams({ db: m[1]!, run: m[2]! }));
    return { db: s.key, label: s.label, ...snapshot(s.db, () => ({ summary: runSummaryById(s.db, run), curve: curve(s.db, run), baselines: baselines(s.db, run) })) };
  });
}

function sourceRun(sources: readonly Source[], params: Params): [Source, number] {
  const key = intParam(params, 'db');
  const s = sources[key];
  if (!s) throw new HttpError(404, `no database ${key}`);
  const run = intParam(params, 'run');
  if (!s.db.prepare(`SELECT 1 FROM runs WHERE id = ?`).get(run)) throw new HttpError(404, `${s.label} has no run ${run}`);
  return [s, run];
}

function intParam(params: Params, name: string): number {
  const v = params.get(name);
  if (v === null || !/^\d{1,15}$/.test(v)) throw new HttpError(400, `${name} must be a non-negative integer`);
  return Number(v);
}

/** Run fn in one read transaction: every query sees the same committed state. */
function snapshot<T>(db: DB, fn: () => T): T {
  return db.transaction(fn)();
}

/** Answers per database, dropped when its version moves (a commit by the search). */
export class AnswerCache {
  private entries = new Map<string, { version: number; value: unknown }>();
  constructor(private readonly limit = 64) {}

  get(s: Source, key: string, compute: () => unknown): unknown {
    const k = `${s.key} ${key}`;
    const hit = this.entries.get(k);
    if (hit && hit.version === s.version) return hit.value;
    const value = compute();
    this.entries.delete(k);
    this.entries.set(k, { version: s.version, value });
    if (this.entries.size > this.limit) this.entries.delete(this.entries.keys().next().value!);
    return value;
  }
}
