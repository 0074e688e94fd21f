/**
 * The fitness of candidate metrics: masks in workers, a mask fingerprint so that equal
 * masks are never paid twice, and two fidelities. Every decision depends only on the
 * batch and on what the database already holds, never on which worker finished first,
 * so a run is reproducible whatever the number of workers and a replayed batch (after
 * `kill -9` and `--resume`) takes the same decisions and finds its finished
 * evaluations in the database instead of paying for them again.
 *
 * Per batch:
 *  1. masks: each candidate's masks over all layers and their fingerprint (worker task);
 *  2. reuse: a candidate whose fingerprint equals an earlier individual's (in the run or
 *     earlier in the batch) takes its perplexities, recorded as status `reused`;
 *  3. short budget: perplexity on the first `shortTokens` fitness tokens;
 *  4. full budget: only for candidates whose short perplexity is within `margin` of the
 *     best short perplexity of the run so far (this batch included);
 *  5. fitness: the full-budget perplexity; for a candidate run only at the short budget,
 *     its short perplexity times the full/short ratio of the run's best short-budget
 *     candidate (its estimate at the full budget). That candidate always has both, and
 *     the estimate is above (1 + margin) times its full perplexity, so a short-only
 *     candidate never overtakes the best. Failures (error, timeout, worker crash) and
 *     invalid trees have fitness +Infinity.
 */
import type { Tree } from '../search-space/tree.ts';
import type { EvalPool, TaskOutcome } from './pool.ts';
import type { MaskReply, PplReply, WorkerTask } from './worker.ts';
import type { EvaluationRow, Fidelity, RunStore } from '../store/store.ts';

export interface FitnessOptions {
  shortTokens: number;
  fullTokens: number;
  /** Relative margin over the best short perplexity within which the full budget is paid (0.1 = 10%). */
  margin: number;
}

export interface Candidate {
  /** Individual id (already recorded in the store). */
  id: number;
  tree: Tree;
}

export interface CandidateResult {
  id: number;
  fitness: number;
  fingerprint: string | null;
  /** Why the candidate got +Infinity without a perplexity, if it did. */
  invalid?: string;
}

/** Counters of what the evaluator paid and saved, for progress lines and the benchmark. */
export interface FitnessCounters {
  candidates: number;
  masks: number;
  reused: number;
  short: number;
  full: number;
  failed: number;
  /** Evaluations found already in the database (replay after resume). */
  replayed: number;
}

export class CandidateEvaluator {
  readonly counters: FitnessCounters = { candidates: 0, masks: 0, reused: 0, short: 0, full: 0, failed: 0, replayed: 0 };
  private readonly masks = new Map<number, MaskReply>();

  constructor(
    private readonly pool: EvalPool,
    private readonly store: RunStore,
    readonly opts: FitnessOptions,
  ) {}

  /**
   * The mask fingerprint of one candidate (the GP engine's fingerprint hook). The masks are
   * kept until the candidate is evaluated, so they are computed once.
   */
  async fingerprint(c: Candidate): Promise<{ fingerprint: string | null; invalid?: string }> {
    const known = this.knownFingerprint(c.id);
    if (known) return { fingerprint: known };
    const out = await this.pool.run<MaskReply>({ kind: 'mask', tree: c.tree } satisfies WorkerTask);
    this.counters.masks++;
    if (out.status !== 'ok') return this.maskFailed(c.id, out);
    const m = out.value;
    if (m.allNaN !== null) {
      const reason = `scores are NaN for every weight of ${m.allNaN}`;
      this.store.markInvalid(c.id, reason);
      return { fingerprint: null, invalid: reason };
    }
    this.masks.set(c.id, m);
    this.store.setFingerprint(c.id, m.fingerprint);
    return { fingerprint: m.fingerprint };
  }

  private knownFingerprint(id: number): string | null {
    if (this.masks.has(id)) return this.masks.get(id)!.fingerprint;
    return null;
  }

  private maskFailed(id: number, out: Exclude<TaskOutcome<MaskReply>, { status: 'ok' }>): { fingerprint: null; invalid: string } {
    if (out.status === 'error') {
      // The tree itself cannot be scored (e.g. invalid): not a worker failure.
      this.store.markInvalid(id, out.error);
      return { fingerprint: null, invalid: out.error };
    }
    this.counters.failed++;
    this.store.tx(() => {
      if (!this.store.evaluation(id, 'short'))
        this.store.addEvaluation({ individual: id, fidelity: 'short', tokens: 0, ppl: null, seconds: out.seconds, worker: null, status: out.status, error: `while masking: ${out.error}` });
      this.store.setFitness(id, Infinity, null);
    });
    return { fingerprint: null, invalid: `${out.status} while masking: ${out.error}` };
  }

  /** Fitness of a batch of candidates (lower is better), in batch order. */
  async evaluate(batch: readonly Candidate[]): Promise<CandidateResult[]> {
    this.counters.candidates += batch.length;
    const results = new Map<number, CandidateResult>();
    // 1. Masks and fingerprints, in parallel.
    const fps = await Promise.all(
      batch.map(async (c) => {
        const done = this.finished(c.id);
        if (done) return { fingerprint: done.fingerprint, invalid: done.invalid, done };
        return { ...(await this.fingerprint(c)), done: undefined };
      }),
    );
    const paying: Candidate[] = [];
    const reusing: { c: Candidate; from: number }[] = [];
    const firstInBatch = new Map<string, number>();
    batch.forEach((c, i) => {
      const f = fps[i]!;
      if (f.done) {
        results.set(c.id, f.done);
        this.counters.replayed++;
        return;
      }
      if (f.fingerprint === null) {
        results.set(c.id, { id: c.id, fitness: Infinity, fingerprint: null, invalid: f.invalid });
        return;
      }
      // 2. Same masks as an individual evaluated before, or earlier in this batch?
      const prior = this.store.sameMask(f.fingerprint, c.id);
      const inBatch = firstInBatch.get(f.fingerprint);
      if (prior && prior.id < c.id && (inBatch === undefined || prior.id < inBatch)) reusing.push({ c, from: prior.id });
      else if (inBatch !== undefined) reusing.push({ c, from: inBatch });
      else {
        firstInBatch.set(f.fingerprint, c.id);
        paying.push(c);
      }
    });
    // 3. Short budget for the new masks.
    await Promise.all(paying.map((c) => this.ppl(c.id, 'short', this.opts.shortTokens)));
    // 4. Full budget for those within the margin of the best short perplexity so far.
    const bestShort = this.bestShort();
    await Promise.all(
      paying.map((c) => {
        const s = this.store.evaluation(c.id, 'short');
        if (s?.status === 'ok' && s.ppl !== null && s.ppl <= bestShort * (1 + this.opts.margin)) return this.ppl(c.id, 'full', this.opts.fullTokens);
        return undefined;
      }),
    );
    // 5. Fitness, then reuse.
    const ratio = this.fullShortRatio();
    for (const c of paying) {
      const fitness = this.fitnessOf(c.id, ratio);
      this.store.setFitness(c.id, fitness.value, fitness.fidelity);
      results.set(c.id, { id: c.id, fitness: fitness.value, fingerprint: this.masks.get(c.id)?.fingerprint ?? null });
    }
    for (const { c, from } of reusing) results.set(c.id, this.reuse(c.id, from));
    for (const c of batch) this.masks.delete(c.id);
    return batch.map((c) => results.get(c.id)!);
  }

  /** A result already complete in the database (a batch replayed after resume). */
  private finished(id: number): CandidateResult | undefined {
    const r = this.store.db
      .prepare(`SELECT fitness, fingerprint, invalid FROM individuals WHERE run = ? AND id = ? AND fitness IS NOT NULL`)
      .get(this.store.runId, id) as { fitness: number; fingerprint: string | null; invalid: string | null } | undefined;
    return r && { id, fitness: r.fitness, fingerprint: r.fingerprint, ...(r.invalid ? { invalid: r.invalid } : {}) };
  }

  private async ppl(id: number, fidelity: Fidelity, maxTokens: number): Promise<void> {
    if (this.store.evaluation(id, fidelity)) {
      this.counters.replayed++;
      return;
    }
    const m = this.masks.get(id)!;
    const out = await this.pool.run<PplReply>({ kind: 'ppl', mask: m.mask, maxTokens } satisfies WorkerTask);
    if (out.status === 'ok') {
      this.counters[fidelity]++;
      this.store.addEvaluation({ individual: id, fidelity, tokens: out.value.tokens, ppl: out.value.ppl, seconds: out.seconds, worker: out.value.worker, status: 'ok' });
    } else {
      this.counters.failed++;
      this.store.addEvaluation({ individual: id, fidelity, tokens: 0, ppl: null, seconds: out.seconds, worker: null, status: out.status, error: out.error });
    }
  }

  private bestShort(): number {
    const v = this.store.db
      .prepare(`SELECT MIN(ppl) FROM evaluations WHERE run = ? AND fidelity = 'short' AND status = 'ok'`)
      .pluck()
      .get(this.store.runId) as number | null;
    return v ?? Infinity;
  }

  /** full/short perplexity of the candidate with the best short perplexity among those run at both budgets. */
  private fullShortRatio(): number {
    const r = this.store.db
      .prepare(
        `SELECT s.ppl AS short, f.ppl AS full FROM evaluations s JOIN evaluations f
           ON f.run = s.run AND f.individual = s.individual AND f.fidelity = 'full' AND f.status = 'ok'
         WHERE s.run = ? AND s.fidelity = 'short' AND s.status = 'ok'
         ORDER BY s.ppl, s.individual LIMIT 1`,
      )
      .get(this.store.runId) as { short: number; full: number } | undefined;
    return r ? r.full / r.short : 1;
  }

  private fitnessOf(id: number, ratio: number): { value: number; fidelity: Fidelity | null } {
    const full = this.store.evaluation(id, 'full');
    if (full) return full.status === 'ok' ? { value: full.ppl!, fidelity: 'full' } : { value: Infinity, fidelity: null };
    const short = this.store.evaluation(id, 'short');
    if (short?.status === 'ok') return { value: short.ppl! * ratio, fidelity: 'short' };
    return { value: Infinity, fidelity: null };
  }

  /** Copy the evaluations and fitness of an individual with the same masks. */
  private reuse(id: number, from: number): CandidateResult {
    this.counters.reused++;
    const src = this.store.db.prepare(`SELECT fitness, fidelity, fingerprint FROM individuals WHERE run = ? AND id = ?`).get(this.store.runId, from) as {
      fitness: number | null;
      fidelity: Fidelity | null;
      fingerprint: string | null;
    };
    this.store.tx(() => {
      for (const fid of ['short', 'full'] as const) {
        const e: EvaluationRow | undefined = this.store.evaluation(from, fid);
        if (!e || this.store.evaluation(id, fid)) continue;
        this.store.addEvaluation({ individual: id, fidelity: fid, tokens: e.tokens, ppl: e.ppl, seconds: 0, worker: null, status: 'reused', error: e.status === 'ok' ? null : `reused a ${e.status}`, reusedFrom: e.reusedFrom ?? e.id });
      }
      this.store.setFitness(id, src.fitness ?? Infinity, src.fidelity);
    });
    return { id, fitness: src.fitness ?? Infinity, fingerprint: src.fingerprint };
  }
}
