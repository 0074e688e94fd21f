/** The GP loop of a search: step the engine to the end of the budget, checkpointing after every step. */
import { GpEngine, type GpDeps, type IndividualRecord, type StepSummary } from '../gp/index.ts';
import type { CandidateEvaluator } from '../eval/fitness.ts';
import type { RunStore } from '../store/store.ts';
import type { SearchSettings } from './settings.ts';

/** After each step: where the run stands. */
export interface StepProgress {
  kind: 'step';
  /** Steps done in this session, of `total` left when it started. */
  done: number;
  total: number;
  step: number;
  best: number | null;
  /** Perplexity evaluations paid over the whole run, by budget (one per candidate and setting). */
  paid: { short: number; full: number };
  /** Settings each candidate is measured at. */
  settings: number;
  /** Short-budget evaluations per minute in this session. */
  perMinute: number;
  maskDuplicates: number;
}

export interface EvolveOptions {
  signal?: AbortSignal;
  onStep?: (p: StepProgress) => void;
  /** Run time of earlier sessions, and when this one started (performance.now()). */
  secondsBefore: number;
  t0: number;
}

class Stopped extends Error {}

/** Returns 'interrupted' when the signal was aborted (after the step in progress). */
export async function evolve(store: RunStore, s: SearchSettings, ev: CandidateEvaluator, o: EvolveOptions): Promise<'finished' | 'interrupted'> {
  let engine: GpEngine;
  const deps: GpDeps = {
    evaluate: async (batch) => (await ev.evaluate(batch, engine.state.step + 1)).map((r) => (r.invalid ? { fitness: r.fitness, invalid: r.invalid } : r.fitness)),
    fingerprint: (tree, meta) => ev.fingerprint(tree, meta, engine.state.step + 1),
    // The engine's record carries every field the store needs (and some it ignores).
    onIndividual: (r: IndividualRecord) => ev.record(r),
  };
  const ckpt = store.latestCheckpoint<string>();
  engine = ckpt
    ? GpEngine.restore(ckpt.state, deps)
    : GpEngine.create({ ...s.gp, seed: String(s.seed), mode: s.mode, populationSize: s.population, batchSize: s.batch, seedKnown: s.seedKnown }, deps);
  const until = s.mode === 'generational' ? { generations: s.generations! } : { iterations: Math.ceil(s.iterations! / s.batch) };
  const totalSteps = s.mode === 'generational' ? Math.ceil((s.population / s.batch) * (1 + s.generations!)) : Math.ceil(s.population / s.batch) + until.iterations!;
  const firstStep = engine.state.step;
  const t0 = performance.now();
  const afterStep = (sum: StepSummary, e: GpEngine): void => {
    const paid = store.paidEvaluations();
    const elapsed = o.secondsBefore + (performance.now() - o.t0) / 1000;
    store.tx(() => {
      store.saveCheckpoint(sum.step, e.serialize());
      store.addProgress({ step: sum.step, evaluations: paid.short + paid.full, individuals: store.individualCount(), best: sum.best?.fitness ?? null, median: median(e.state.population.map((p) => p.fitness)), elapsed });
      store.setSeconds(elapsed);
    });
    o.onStep?.({
      kind: 'step',
      done: sum.step - firstStep,
      total: totalSteps - firstStep,
      step: sum.step,
      best: sum.best?.fitness ?? null,
      paid,
      settings: store.settings.length,
      perMinute: ev.counters.short / Math.max((performance.now() - t0) / 60000, 1e-9),
      maskDuplicates: ev.counters.maskDuplicates,
    });
    if (o.signal?.aborted) throw new Stopped();
  };
  try {
    await engine.run(until, afterStep);
  } catch (e) {
    if (e instanceof Stopped) return 'interrupted';
    throw e;
  }
  return 'finished';
}

function median(v: number[]): number | null {
  const a = [...v].sort((x, y) => x - y);
  if (!a.length) return null;
  return a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
}
