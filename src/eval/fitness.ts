/**
 * The fitness of candidate metrics: masks in workers, a mask fingerprint so that equal
 * masks are never paid twice, and two fidelities. Every decision depends only on the
 * batch and on what the database already holds, never on which worker finished first,
 * so a run is reproducible whatever the number of workers, and a batch replayed after
 * `kill -9` and `--resume` takes the same decisions and finds its finished evaluations
 * in the database instead of paying for them again.
 *
 * For each candidate:
 *  1. `fingerprint`: its masks over all layers (a worker task) and their hash. The worker
 *     keeps the masks under that hash, so the perplexity tasks that follow (which carry the
 *     tree and the fingerprint, nothing else) usually find them computed. A candidate
 *     whose fingerprint equals an evaluated individual's is logged in `mask_duplicates`
 *     (the GP engine then regenerates it, or shares that individual's fitness).
 *  2. short budget: perplexity on the first `shortTokens` fitness tokens;
 *  3. full budget: only when the short perplexity is within `margin` of the best short
 *     perplexity of the run before this step (so each candidate goes on to its full budget
 *     as soon as its short one is done, without waiting for the rest of the batch; in the
 *     first step every candidate gets the full budget);
 *  4. fitness: the full-budget perplexity; for a candidate run only at the short budget,
 *     its short perplexity times the full/short ratio of the run's best short-budget
 *     candidate, i.e. its estimate at the full budget. That candidate always has both,
 *     and the estimate is above (1 + margin) times its full perplexity, so a short-only
 *     candidate never overtakes the best. Failures (error, timeout, worker crash) and
 *     invalid trees have fitness +Infinity.
 *
 * A run over several settings (sparsity and pattern pairs) measures every candidate at each:
 * a candidate's perplexity at a budget is then the geometric mean over the settings, and the
 * steps above apply to it unchanged (one decision per candidate: the full budget at every
 * setting when the short geometric mean is within the margin of the best). Its fingerprint
 * is the hash of its masks' fingerprints at all settings, so two candidates are the same only
 * when their masks are equal everywhere; a candidate whose masks at one setting equal those
 * of an individual from an earlier step takes that setting's perplexity from it.
 *
 * This module knows nothing of the GP engine: the search glues the two together.
 */
import { createHash } from 'node:crypto';
import { toPrunerZeroJson } from '../search-space/print.ts';
import type { Tree } from '../search-space/tree.ts';
import { treeFeatures } from '../store/features.ts';
import type { EvaluationRow, Fidelity, RunStore } from '../store/store.ts';
import { geometricMean } from '../store/setting.ts';
import type { TaskOutcome, TaskRunner } from './task-runner.ts';
import type { MaskReply, PplReply, WorkerTask } from './worker.ts';

export interface FitnessOptions {
  /** Tokens of the fitness stream read at each budget (windows of seqlen; the short one is a prefix). */
  shortTokens: number;
  fullTokens: number;
  /** Relative margin over the best short perplexity within which the full budget is paid (0.1 = 10%). */
  margin: number;
}

export interface Candidate {
  id: number;
  tree: Tree;
  infix: string;
  canonical?: string;
  hash: string;
  fingerprint: string | null;
}

export interface CandidateResult {
  fitness: number;
  /** Why the candidate has no usable fitness, if so. */
  invalid?: string;
}

/** A candidate as the GP engine reports it once its step is over. */
export interface CandidateRecord extends Candidate {
  parents: number[];
  origin: string;
  step: number;
  fitness: number;
  invalid: string | null;
  /** The individual whose fitness it took instead of being evaluated. */
  sharedWith: number | null;
}

/** What the evaluator paid and saved, for progress lines and the benchmark. */
export interface FitnessCounters {
  masks: number;
  short: number;
  full: number;
  failed: number;
  /** Candidates whose masks equalled an evaluated individual's. */
  maskDuplicates: number;
  /** Evaluations found already in the database (a batch replayed after resume). */
  replayed: number;
  /** Perplexities at one setting taken from an earlier individual with the same masks there (runs of several settings). */
  settingReuses: number;
}

type MaskFailure = Exclude<TaskOutcome<MaskReply>, { status: 'ok' }>;

/** A candidate's masks: their fingerprint at each setting, and the candidate's fingerprint over all of them. */
interface MaskSet {
  fingerprint: string;
  perSetting: string[];
}

/** The fingerprint over all settings: a setting's own when there is one, so a run of one setting is unchanged. */
function combinedFingerprint(perSetting: string[]): string {
  return perSetting.length === 1 ? perSetting[0]! : createHash('sha256').update(perSetting.join('\n')).digest('hex').slice(0, 32);
}

/** An evaluation whose perplexity counts (paid, or taken from equal masks). */
const usable = (e: EvaluationRow | undefined): e is EvaluationRow & { ppl: number } => !!e && (e.status === 'ok' || e.status === 'reused') && e.ppl !== null;

export class CandidateEvaluator {
  readonly counters: FitnessCounters = { masks: 0, short: 0, full: 0, failed: 0, maskDuplicates: 0, replayed: 0, settingReuses: 0 };
  /** Mask fingerprints of candidates fingerprinted in the current step, by canonical hash. */
  private readonly masks = new Map<string, MaskSet>();
  private readonly maskFailures = new Map<string, MaskFailure>();
  /** The run's settings by name (tasks name them by index); one for most runs. */
  private readonly settings: readonly string[];

  constructor(
    private readonly runner: TaskRunner,
    private readonly store: RunStore,
    readonly opts: FitnessOptions,
  ) {
    this.settings = store.settings;
  }

  /** The GP engine's fingerprint hook: the hash of the candidate's masks over all layers (and settings). */
  async fingerprint(tree: Tree, meta: { infix: string; hash: string }, step: number): Promise<string | { invalid: string }> {
    const out = await this.computeMasks(tree, meta.hash);
    if ('status' in out) {
      if (out.status === 'error') return { invalid: out.error }; // the tree cannot be scored
      // The worker died or hung: let the candidate through so the failure is recorded as its evaluation.
      this.maskFailures.set(meta.hash, out);
      return `failed:${meta.hash}`;
    }
    if (out.allNaN !== null) return { invalid: `scores are NaN for every weight of ${out.allNaN}` };
    const m = out.masks;
    const seen = this.store.firstWithFingerprint(m.fingerprint, meta.hash);
    const pendingDup = [...this.masks.entries()].some(([h, x]) => h !== meta.hash && x.fingerprint === m.fingerprint);
    if (seen !== undefined || pendingDup) {
      this.counters.maskDuplicates++;
      this.store.addMaskDuplicate({ hash: meta.hash, infix: meta.infix, fingerprint: m.fingerprint, step });
    } else {
      this.masks.set(meta.hash, m);
    }
    return m.fingerprint;
  }

  /** The candidate's masks at every setting (one worker task each), or the first failure. */
  private async computeMasks(tree: Tree, hash: string): Promise<{ masks: MaskSet; allNaN: string | null } | MaskFailure> {
    const several = this.settings.length > 1;
    const outs = await Promise.all(
      this.settings.map((_, i) => this.runner.run<MaskReply>({ kind: 'mask', tree, ...(several ? { setting: i } : {}), key: several ? `mask/${hash}/${i}` : `mask/${hash}` } satisfies WorkerTask)),
    );
    this.counters.masks += outs.length;
    const failure = outs.find((o) => o.status === 'error') ?? outs.find((o) => o.status !== 'ok');
    if (failure && failure.status !== 'ok') return failure;
    const replies = outs.map((o) => (o as { value: MaskReply }).value);
    const perSetting = replies.map((r) => r.fingerprint);
    return { masks: { fingerprint: combinedFingerprint(perSetting), perSetting }, allNaN: replies.find((r) => r.allNaN !== null)?.allNaN ?? null };
  }

  /** The GP engine's evaluator: fitness of a batch, in batch order (lower is better). */
  async evaluate(batch: readonly Candidate[], step: number): Promise<CandidateResult[]> {
    const results = new Map<number, CandidateResult>();
    // Record the candidates first, so each evaluation can be committed the moment it finishes.
    this.store.tx(() => {
      for (const c of batch)
        this.store.addIndividual({
          id: c.id,
          infix: c.infix,
          canonical: c.canonical,
          tree: toPrunerZeroJson(c.tree),
          hash: c.hash,
          features: treeFeatures(c.tree),
          parents: [],
          origin: 'pending',
          step,
          fingerprint: c.fingerprint?.startsWith('failed:') ? null : c.fingerprint,
        });
    });
    const bestBefore = this.bestShortBefore(step);
    const paying: Candidate[] = [];
    for (const c of batch) {
      const done = this.finished(c.id);
      if (done) {
        this.counters.replayed++;
        results.set(c.id, done);
        continue;
      }
      const failure = this.maskFailures.get(c.hash);
      if (failure) {
        results.set(c.id, this.recordMaskFailure(c.id, failure));
        continue;
      }
      paying.push(c);
    }
    // Masks for candidates that were not fingerprinted in this process (no hook, or replay).
    await Promise.all(
      paying.map(async (c) => {
        if (this.masks.has(c.hash) || (this.hasAll(c.id, 'short') && !this.needsFull(c.id, bestBefore))) return;
        const out = await this.computeMasks(c.tree, c.hash);
        if ('status' in out) this.maskFailures.set(c.hash, out);
        else this.masks.set(c.hash, out.masks);
      }),
    );
    const live = paying.filter((c) => {
      const failure = this.maskFailures.get(c.hash);
      if (failure) results.set(c.id, this.recordMaskFailure(c.id, failure));
      return !failure;
    });
    // Equal masks to an individual evaluated earlier: take its perplexities.
    const toPay: Candidate[] = [];
    for (const c of live) {
      const fp = this.masks.get(c.hash)?.fingerprint ?? c.fingerprint;
      const prior = fp ? this.store.sameMask(fp, c.id) : undefined;
      if (prior && prior.id < c.id && !this.hasAny(c.id, 'short')) results.set(c.id, this.reuse(c.id, prior.id));
      else toPay.push(c);
    }
    // Short budget, then the full budget for those near the best so far, each candidate on its own.
    // Several settings: each setting of a candidate runs at once.
    const atEvery = (c: Candidate, fidelity: Fidelity, tokens: number): Promise<unknown> => Promise.all(this.settings.map((_, i) => this.ppl(c, fidelity, tokens, i, step)));
    await Promise.all(
      toPay.map(async (c) => {
        await atEvery(c, 'short', this.opts.shortTokens);
        if (this.needsFull(c.id, bestBefore)) await atEvery(c, 'full', this.opts.fullTokens);
      }),
    );
    const ratio = this.fullShortRatio();
    this.store.tx(() => {
      for (const c of toPay) {
        const f = this.fitnessOf(c.id, ratio);
        this.store.setFitness(c.id, f.value, f.fidelity);
        results.set(c.id, f.value === Infinity ? { fitness: Infinity, invalid: f.why ?? 'evaluation failed' } : { fitness: f.value });
      }
    });
    this.masks.clear();
    this.maskFailures.clear();
    return batch.map((c) => results.get(c.id)!);
  }

  /** The GP engine's per-individual callback: complete the individual's row once its step is over. */
  record(r: CandidateRecord): void {
    this.store.tx(() => {
      // A shared individual has the masks of the one it shares with (equal canonical form or masks).
      const fingerprint = r.sharedWith !== null && !r.fingerprint ? this.store.fingerprintOf(r.sharedWith) : r.fingerprint;
      this.store.addIndividual({
        id: r.id,
        infix: r.infix,
        canonical: r.canonical,
        tree: toPrunerZeroJson(r.tree),
        hash: r.hash,
        features: treeFeatures(r.tree),
        parents: r.parents,
        origin: r.origin,
        step: r.step,
        fingerprint: fingerprint?.startsWith('failed:') ? null : fingerprint,
        invalid: r.invalid,
        sharedWith: r.sharedWith,
      });
      if (r.sharedWith !== null) this.copyEvaluations(r.id, r.sharedWith);
      if (r.sharedWith !== null || r.invalid !== null || !this.finished(r.id))
        this.store.setFitness(r.id, r.invalid !== null ? Infinity : r.fitness, this.store.fitnessOf(r.sharedWith ?? r.id)?.fidelity ?? null);
    });
  }

  /** A result already complete in the database (a batch replayed after resume). */
  private finished(id: number): CandidateResult | undefined {
    const r = this.store.fitnessOf(id);
    if (!r || r.fitness === null) return undefined;
    return r.invalid ? { fitness: r.fitness, invalid: r.invalid } : { fitness: r.fitness };
  }

  private recordMaskFailure(id: number, out: MaskFailure): CandidateResult {
    const why = `${out.status} while masking: ${out.error}`;
    this.counters.failed++;
    this.store.tx(() => {
      if (!this.store.evaluation(id, 'short'))
        this.store.addEvaluation({ individual: id, fidelity: 'short', tokens: 0, ppl: null, seconds: out.seconds, worker: null, status: out.status, error: why });
      this.store.setFitness(id, Infinity, null);
    });
    return { fitness: Infinity, invalid: why };
  }

  private hasAll(id: number, fidelity: Fidelity): boolean {
    return this.settings.every((l) => this.store.evaluation(id, fidelity, l));
  }

  private hasAny(id: number, fidelity: Fidelity): boolean {
    return this.settings.some((l) => this.store.evaluation(id, fidelity, l));
  }

  /** A candidate's perplexity at a budget over all settings (their geometric mean); null unless every setting has one. */
  private combinedPpl(id: number, fidelity: Fidelity): number | null {
    const xs: number[] = [];
    for (const l of this.settings) {
      const e = this.store.evaluation(id, fidelity, l);
      if (!usable(e)) return null;
      xs.push(e.ppl);
    }
    return geometricMean(xs);
  }

  private needsFull(id: number, bestBefore: number): boolean {
    if (this.hasAll(id, 'full')) return false;
    const short = this.combinedPpl(id, 'short');
    return short !== null && short <= bestBefore * (1 + this.opts.margin);
  }

  /** A candidate's perplexity at one setting and budget: found (replay), taken from equal masks of an earlier step, or paid. */
  private async ppl(c: Candidate, fidelity: Fidelity, maxTokens: number, i: number, step: number): Promise<void> {
    const setting = this.settings[i]!;
    if (this.store.evaluation(c.id, fidelity, setting)) {
      this.counters.replayed++;
      return;
    }
    const fingerprint = this.masks.get(c.hash)!.perSetting[i]!;
    const several = this.settings.length > 1;
    const prior = several ? this.store.priorEvaluation(setting, fingerprint, fidelity, step) : undefined;
    if (prior) {
      this.counters.settingReuses++;
      this.store.addEvaluation({ individual: c.id, setting, fidelity, tokens: prior.tokens, ppl: prior.ppl, seconds: 0, worker: null, status: 'reused', reusedFrom: prior.reusedFrom ?? prior.id, fingerprint });
      return;
    }
    const key = several ? `${c.id}/${fidelity}/${i}/${fingerprint}` : `${c.id}/${fidelity}/${fingerprint}`;
    const out = await this.runner.run<PplReply>({ kind: 'ppl', tree: c.tree, fingerprint, maxTokens, ...(several ? { setting: i } : {}), key } satisfies WorkerTask);
    if (out.status === 'ok') {
      this.counters[fidelity]++;
      this.store.addEvaluation({ individual: c.id, setting, fidelity, tokens: out.value.tokens, ppl: out.value.ppl, seconds: out.seconds, worker: out.value.worker, status: 'ok', fingerprint });
    } else {
      this.counters.failed++;
      this.store.addEvaluation({ individual: c.id, setting, fidelity, tokens: 0, ppl: null, seconds: out.seconds, worker: null, status: out.status, error: out.error, fingerprint });
    }
  }

  /** Best short perplexity of individuals made before this step (the same when a step is replayed). */
  private bestShortBefore(step: number): number {
    return this.store.bestShortPplBefore(step) ?? Infinity;
  }

  /** full/short perplexity of the candidate with the best short perplexity among those run at both budgets. */
  private fullShortRatio(): number {
    const r = this.store.bestShortWithFull();
    return r ? r.full / r.short : 1;
  }

  private fitnessOf(id: number, ratio: number): { value: number; fidelity: Fidelity | null; why?: string } {
    const at = (fidelity: Fidelity): { ppl: number | null; failed?: EvaluationRow; setting?: string } | null => {
      const rows = this.settings.map((l) => [l, this.store.evaluation(id, fidelity, l)] as const);
      if (!rows.some(([, e]) => e)) return null;
      const bad = rows.find(([, e]) => !usable(e));
      return bad ? { ppl: null, failed: bad[1], setting: bad[0] } : { ppl: this.combinedPpl(id, fidelity) };
    };
    const where = (setting: string | undefined): string => (this.settings.length > 1 ? ` (setting ${setting})` : '');
    const full = at('full');
    if (full) return full.ppl !== null ? { value: full.ppl, fidelity: 'full' } : { value: Infinity, fidelity: null, why: full.failed ? `${full.failed.status} at the full budget${where(full.setting)}: ${full.failed.error}` : `not evaluated at the full budget${where(full.setting)}` };
    const short = at('short');
    if (short?.ppl != null) return { value: short.ppl * ratio, fidelity: 'short' };
    return { value: Infinity, fidelity: null, why: short?.failed ? `${short.failed.status} at the short budget${where(short.setting)}: ${short.failed.error}` : 'not evaluated' };
  }

  /** Take the perplexities and fitness of an individual with the same masks. */
  private reuse(id: number, from: number): CandidateResult {
    const src = this.store.fitnessOf(from)!;
    this.store.tx(() => {
      this.copyEvaluations(id, from);
      this.store.setFitness(id, src.fitness ?? Infinity, src.fidelity);
    });
    const fitness = src.fitness ?? Infinity;
    return fitness === Infinity ? { fitness, invalid: src.invalid ?? `same masks as ${from}, which failed` } : { fitness };
  }

  private copyEvaluations(id: number, from: number): void {
    for (const setting of this.settings)
      for (const fid of ['short', 'full'] as const) {
        const e: EvaluationRow | undefined = this.store.evaluation(from, fid, setting);
        if (!e || this.store.evaluation(id, fid, setting)) continue;
        this.store.addEvaluation({
          individual: id,
          setting,
          fidelity: fid,
          tokens: e.tokens,
          ppl: e.ppl,
          seconds: 0,
          worker: null,
          status: 'reused',
          error: e.status === 'ok' || e.status === 'reused' ? null : `reused a ${e.status}`,
          reusedFrom: e.reusedFrom ?? e.id,
          fingerprint: e.fingerprint,
        });
      }
  }
}
