/**
 * The Pareto front of a run: the best fitness at each tree size, kept only where it beats
 * every smaller tree (as PySR's hall of fame shows accuracy against complexity). A point
 * is on the front when no individual is at least as small and strictly better, or
 * strictly smaller and at least as good.
 */
import type { DB } from './schema.ts';

export interface ParetoPoint {
  size: number;
  id: number;
  infix: string;
  depth: number;
  /** The search's fitness (perplexity on the fitness data; full budget where paid). */
  fitness: number;
  fidelity: string | null;
  shortPpl: number | null;
  fullPpl: number | null;
}

/** The front, by size ascending (fitness then strictly descending); ties go to the earliest id. */
export function paretoFront(db: DB, run: number): ParetoPoint[] {
  const rows = db
    .prepare(
      `SELECT i.size, i.id, i.infix, i.depth, i.fitness, i.fidelity,
              (SELECT MAX(ppl) FROM evaluations e WHERE e.run = i.run AND e.individual = i.id AND e.fidelity = 'short') AS short_ppl,
              (SELECT MAX(ppl) FROM evaluations e WHERE e.run = i.run AND e.individual = i.id AND e.fidelity = 'full') AS full_ppl
       FROM individuals i
       WHERE i.run = ? AND i.fitness IS NOT NULL AND i.fitness < 1e308 AND i.invalid IS NULL
       ORDER BY i.size, i.fitness, i.id`,
    )
    .all(run) as Record<string, unknown>[];
  const front: ParetoPoint[] = [];
  let best = Infinity;
  for (const r of rows) {
    const fitness = r.fitness as number;
    if (!(fitness < best)) continue; // not better than every smaller (or equal-size earlier) tree
    best = fitness;
    front.push({
      size: r.size as number,
      id: r.id as number,
      infix: r.infix as string,
      depth: r.depth as number,
      fitness,
      fidelity: (r.fidelity as string | null) ?? null,
      shortPpl: (r.short_ppl as number | null) ?? null,
      fullPpl: (r.full_ppl as number | null) ?? null,
    });
  }
  return front;
}
