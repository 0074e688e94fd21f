/**
 * The evolutionary loop. One `step()` creates up to `batchSize` new individuals, hands the
 * ones that need a fitness to the injected evaluator in ONE call (so the caller can spread
 * them over workers), records every individual through `onIndividual`, and updates the
 * population. All state (population, RNG state, counters, caches) is plain data:
 * `serialize()` after any step and `GpEngine.restore()` continue exactly as if the run had
 * never stopped.
 *
 * Each candidate tree goes through, in order:
 * 1. OOS (`simplify`); too deep or too large -> regenerated.
 * 2. Canonical hash: equal to anything already seen (evaluated, invalid, or earlier in this
 *    batch; parents included) -> regenerated.
 * 3. Validity: wrong shape, a primitive the search does not enable, or NaN/inf/constant
 *    scores on the probe layer -> recorded with fitness +inf and the reason, never evaluated,
 *    and regenerated.
 * 4. Fingerprint hook (optional): equal to a fingerprint already seen -> regenerated.
 * After `maxRetries` attempts a child that is still a duplicate is accepted and shares the
 * fitness of the metric it duplicates (recorded with `cacheHit`), so no evaluation is spent;
 * if the last attempt is invalid, the slot stays empty.
 *
 * Lower fitness is better (perplexity). Ties are broken by id (older first) when choosing,
 * and the newest of equally bad individuals is the one removed.
 */
import { InputError } from '../errors.ts';
import {
  KNOWN_ALLOCATIONS,
  KNOWN_METRICS,
  canonicalize,
  canonicalizeAllocation,
  simplifyAllocation,
  validateAllocationTree,
  defaultProbeData,
  depth,
  parseMetric,
  probeTree,
  simplify,
  size,
  toInfix,
  validateTree,
  type TerminalData,
  type Tree,
} from '../search-space/index.ts';
import { createHash } from 'node:crypto';
import { resolveConfig, type GpConfig } from './config.ts';
import { outsidePrimitives, randomTree, type PrimitiveSet } from './primitives.ts';
import { createRng, type Rng, type RngState } from './rng.ts';
import { crossover, pointMutation, subtreeMutation } from './variation.ts';

export type Origin =
  | 'init'
  | 'seed'
  | 'crossover'
  | 'mutation-point'
  | 'mutation-subtree'
  | 'crossover+mutation-point'
  | 'crossover+mutation-subtree'
  | 'copy';

/** How an individual got its fitness: evaluated ('none'), or shared with an equivalent metric. */
export type CacheHit = 'none' | 'hash' | 'fingerprint';

export interface Individual {
  id: number;
  /** The tree after OOS. */
  tree: Tree;
  infix: string;
  /** Canonical infix and its SHA-1 (canonicalHash). */
  canonical: string;
  hash: string;
  fingerprint: string | null;
  fitness: number;
  origin: Origin;
  parents: number[];
  /** The step that created it (1-based, as StepSummary.step). */
  step: number;
}

/** What `onIndividual` receives for every individual created, valid or not. */
export interface IndividualRecord extends Individual {
  /** Why the tree is not a usable metric (fitness is then +inf), or null. */
  invalid: string | null;
  cacheHit: CacheHit;
  /** Id of the individual whose fitness was shared (cacheHit != 'none'). */
  sharedWith: number | null;
  /** Attempts the slot took (1 = the first candidate was accepted). */
  attempts: number;
  phase: 'init' | 'evolve';
  /** Whatever the evaluator returned beside the fitness. */
  info?: unknown;
}

export interface EvalRequest {
  id: number;
  tree: Tree;
  infix: string;
  hash: string;
  fingerprint: string | null;
}

/** A fitness, or a fitness with a reason the metric is unusable and/or extra information. */
export type EvalOutcome = number | { fitness: number; invalid?: string | null; info?: unknown };

export interface GpDeps {
  /** Fitness of a batch, in order; lower is better. Called once per step at most. */
  evaluate(batch: EvalRequest[]): Promise<EvalOutcome[]>;
  /** Semantic fingerprint (e.g. a hash of the masks on a reference layer). */
  fingerprint?(tree: Tree, meta: { infix: string; hash: string }): Promise<string | { invalid: string }>;
  /** Layer used to reject NaN/inf/constant metrics; default: synthetic; null: no probe. */
  probe?: TerminalData | null;
  onIndividual?(record: IndividualRecord): void | Promise<void>;
}

export interface CacheEntry {
  fitness: number;
  id: number;
  invalid: string | null;
}

export interface GpCounters {
  /** Individuals sent to the evaluator. */
  evaluated: number;
  /** Individuals that shared a fitness instead of being evaluated. */
  cacheHits: number;
  invalid: number;
  /** Candidates regenerated because they duplicated a known metric. */
  duplicates: number;
  /** Candidates regenerated because they exceeded maxDepth/maxSize. */
  overLimit: number;
  /** Slots left empty because every attempt failed. */
  exhausted: number;
}

export interface GpState {
  version: 1;
  config: GpConfig;
  rng: RngState;
  phase: 'init' | 'evolve';
  /** Completed steps (init and evolve). */
  step: number;
  /** Completed evolve steps (steady-state iterations). */
  iterations: number;
  /** Completed generations (generational mode). */
  generation: number;
  nextId: number;
  /** Random initial trees drawn so far (drives the ramped depth/method cycle). */
  initCount: number;
  /** Seeds placed or rejected so far. */
  seedIndex: number;
  population: Individual[];
  /** Generational mode: the next generation being built. */
  offspring: Individual[];
  /** Canonical hash -> fitness of everything seen. */
  hashCache: Record<string, CacheEntry>;
  /** Fingerprint -> fitness. */
  fpCache: Record<string, CacheEntry>;
  counters: GpCounters;
}

export interface StepSummary {
  /** Steps completed, this one included. */
  step: number;
  phase: 'init' | 'evolve';
  records: IndividualRecord[];
  evaluated: number;
  best: Individual | null;
  populationSize: number;
}

interface Pending {
  record: IndividualRecord;
  /** Index in the batch of the pending individual it shares a fitness with. */
  shareIndex: number | null;
}

type Considered = { kind: 'accept'; pending: Pending } | { kind: 'retry' };

/** What differs between the tree languages: validity, OOS, the canonical form, the known seeds, the probe. */
const LANGUAGES = {
  metric: { validate: validateTree, simplify: (t: Tree) => simplify(t), canonicalize, known: KNOWN_METRICS, probe: true },
  allocation: { validate: validateAllocationTree, simplify: simplifyAllocation, canonicalize: canonicalizeAllocation, known: KNOWN_ALLOCATIONS, probe: false },
};

function sha1(s: string): string {
  return createHash('sha1').update(s).digest('hex');
}

/** Better first: lower fitness, then older. */
function better(a: Individual, b: Individual): number {
  return a.fitness - b.fitness || a.id - b.id;
}

export class GpEngine {
  private s: GpState;
  private rng: Rng;
  private readonly deps: GpDeps;
  private readonly prims: PrimitiveSet;
  private readonly seedTrees: Tree[];
  private readonly lang: (typeof LANGUAGES)[keyof typeof LANGUAGES];

  private constructor(state: GpState, deps: GpDeps) {
    this.s = state;
    this.deps = deps;
    this.rng = createRng(state.config.seed, state.rng);
    this.prims = { terminals: state.config.terminals, unary: state.config.unaryOps, binary: state.config.binaryOps };
    this.lang = LANGUAGES[state.config.language];
    this.seedTrees = [
      ...(state.config.seedKnown ? Object.values(this.lang.known).map((m) => m.tree) : []),
      ...state.config.seeds.map((text) => parseMetric(text)),
    ];
  }

  /** A fresh run. */
  static create(config: Partial<GpConfig>, deps: GpDeps): GpEngine {
    const c = resolveConfig(config);
    const rng = createRng(c.seed);
    const state: GpState = {
      version: 1,
      config: c,
      rng: rng.state(),
      phase: 'init',
      step: 0,
      iterations: 0,
      generation: 0,
      nextId: 1,
      initCount: 0,
      seedIndex: 0,
      population: [],
      offspring: [],
      hashCache: {},
      fpCache: {},
      counters: { evaluated: 0, cacheHits: 0, invalid: 0, duplicates: 0, overLimit: 0, exhausted: 0 },
    };
    return new GpEngine(state, deps);
  }

  /** Continue a run from `serialize()` output (or the parsed state). */
  static restore(saved: string | GpState, deps: GpDeps): GpEngine {
    const state = typeof saved === 'string' ? parseState(saved) : structuredClone(saved);
    if (state.version !== 1) throw new InputError(`gp state: unsupported version ${state.version}`);
    state.config = resolveConfig(state.config);
    return new GpEngine(state, deps);
  }

  /** The live state (read-only by convention; serialize() for a copy). */
  get state(): Readonly<GpState> {
    return this.s;
  }

  /** The whole state as JSON (±Infinity and NaN encoded as strings). */
  serialize(): string {
    return serializeState({ ...this.s, rng: this.rng.state() });
  }

  /** The best individual of the population, or null before any valid one exists. */
  best(): Individual | null {
    let b: Individual | null = null;
    for (const ind of this.s.population) if (!b || better(ind, b) < 0) b = ind;
    return b;
  }

  /**
   * Create and evaluate up to batchSize individuals. If it throws (evaluator or hook
   * failure) the engine is rolled back to its state before the step, so the step can be
   * retried; records already emitted may then be emitted again with the same ids.
   */
  async step(): Promise<StepSummary> {
    // Cheap rollback point: individuals are never mutated once in the population, and the
    // caches only gain keys during a step (journalled in `added`).
    const s = this.s;
    const snapshot = {
      ...s,
      population: s.population.slice(),
      offspring: s.offspring.slice(),
      counters: { ...s.counters },
      rng: this.rng.state(),
    };
    this.added = [];
    try {
      return await this.doStep();
    } catch (e) {
      for (const [cache, key] of this.added) delete s[cache][key];
      this.s = { ...snapshot, hashCache: s.hashCache, fpCache: s.fpCache };
      this.rng = createRng(snapshot.config.seed, snapshot.rng);
      throw e;
    } finally {
      this.added = [];
    }
  }

  private added: ['hashCache' | 'fpCache', string][] = [];

  private remember(cache: 'hashCache' | 'fpCache', key: string, entry: CacheEntry): void {
    if (Object.hasOwn(this.s[cache], key)) return;
    Object.defineProperty(this.s[cache], key, { value: entry, enumerable: true, configurable: true, writable: true });
    this.added.push([cache, key]);
  }

  /** Step until the stop condition holds; `afterStep` is the place to checkpoint. */
  async run(
    until: { iterations?: number; evaluations?: number; generations?: number },
    afterStep?: (summary: StepSummary, engine: GpEngine) => void | Promise<void>,
  ): Promise<void> {
    const done = () =>
      this.s.phase === 'evolve' &&
      ((until.iterations !== undefined && this.s.iterations >= until.iterations) ||
        (until.evaluations !== undefined && this.s.counters.evaluated >= until.evaluations) ||
        (until.generations !== undefined && this.s.generation >= until.generations));
    if (until.iterations === undefined && until.evaluations === undefined && until.generations === undefined) {
      throw new InputError('gp run: give iterations, evaluations or generations to stop at');
    }
    let idle = 0;
    while (!done()) {
      const summary = await this.step();
      if (afterStep) await afterStep(summary, this);
      // A primitive set or probe that rejects (nearly) everything must not spin forever.
      idle = summary.records.some((r) => r.invalid === null) ? 0 : idle + 1;
      if (idle >= 20) {
        const reasons = [...new Set(summary.records.map((r) => r.invalid).filter(Boolean))].slice(0, 3).join('; ');
        throw new InputError(`gp: no usable new metric in 20 consecutive steps (last reasons: ${reasons || 'duplicates or size limits'})`);
      }
    }
  }

  private async doStep(): Promise<StepSummary> {
    const s = this.s;
    const c = s.config;
    const phase = s.phase;
    const batch: Pending[] = [];
    const emitted: IndividualRecord[] = [];
    if (phase === 'init') {
      const want = Math.min(c.batchSize, c.populationSize - s.population.length);
      while (batch.length < want) {
        const p = await this.makeInitial(batch, emitted);
        if (!p) break;
        batch.push(p);
      }
    } else {
      const want =
        c.mode === 'generational' ? Math.min(c.batchSize, c.populationSize - c.elitism - s.offspring.length) : c.batchSize;
      for (let slot = 0; slot < want; slot++) {
        const p = await this.makeChild(batch, emitted);
        if (p) batch.push(p);
      }
    }

    // Evaluate what needs a fitness, in one call.
    const toEval = batch.filter((p) => p.record.cacheHit === 'none');
    if (toEval.length > 0) {
      const outcomes = await this.deps.evaluate(
        toEval.map((p) => ({
          id: p.record.id,
          tree: p.record.tree,
          infix: p.record.infix,
          hash: p.record.hash,
          fingerprint: p.record.fingerprint,
        })),
      );
      if (!Array.isArray(outcomes) || outcomes.length !== toEval.length) {
        throw new Error(`gp: evaluator returned ${Array.isArray(outcomes) ? outcomes.length : typeof outcomes} results for ${toEval.length} candidates`);
      }
      toEval.forEach((p, i) => {
        const o = outcomes[i]!;
        const fitness = typeof o === 'number' ? o : o.fitness;
        let invalid = typeof o === 'number' ? null : (o.invalid ?? null);
        if (typeof o !== 'number' && o.info !== undefined) p.record.info = o.info;
        if (invalid === null && !Number.isFinite(fitness)) invalid = `evaluator returned ${fitness}`;
        p.record.fitness = invalid === null ? fitness : Infinity;
        p.record.invalid = invalid;
        s.counters.evaluated++;
        if (invalid !== null) s.counters.invalid++;
      });
    }
    for (const p of batch) {
      if (p.shareIndex !== null) {
        const src = batch[p.shareIndex]!.record;
        p.record.fitness = src.fitness;
        p.record.invalid = src.invalid;
      }
      const r = p.record;
      const entry: CacheEntry = { fitness: r.fitness, id: r.sharedWith ?? r.id, invalid: r.invalid };
      this.remember('hashCache', r.hash, entry);
      if (r.fingerprint !== null) this.remember('fpCache', r.fingerprint, entry);
      if (r.cacheHit !== 'none') s.counters.cacheHits++;
    }
    for (const p of batch) {
      emitted.push(p.record);
      await this.deps.onIndividual?.(p.record);
    }

    // Update the population with the usable newcomers.
    const fresh = batch.filter((p) => p.record.invalid === null).map((p) => toIndividual(p.record));
    if (phase === 'init') {
      s.population.push(...fresh);
      if (s.population.length >= c.populationSize) s.phase = 'evolve';
    } else if (c.mode === 'steady-state') {
      s.population.push(...fresh);
      while (s.population.length > c.populationSize) this.removeWorst(s.population);
      s.iterations++;
    } else {
      s.offspring.push(...fresh);
      s.iterations++;
      if (s.offspring.length >= c.populationSize - c.elitism) {
        const elites = [...s.population].sort(better).slice(0, c.elitism);
        s.population = [...elites, ...s.offspring];
        s.offspring = [];
        s.generation++;
      }
    }
    s.step++;
    return {
      step: s.step,
      phase,
      records: emitted,
      evaluated: toEval.length,
      best: this.best(),
      populationSize: s.population.length,
    };
  }

  private removeWorst(pop: Individual[]): void {
    let worst = 0;
    for (let i = 1; i < pop.length; i++) {
      const a = pop[i]!;
      const w = pop[worst]!;
      if (a.fitness > w.fitness || (a.fitness === w.fitness && a.id > w.id)) worst = i;
    }
    pop.splice(worst, 1);
  }

  /** The next seed, or a ramped half-and-half random tree. */
  private async makeInitial(batch: Pending[], emitted: IndividualRecord[]): Promise<Pending | null> {
    const s = this.s;
    const c = s.config;
    while (s.seedIndex < this.seedTrees.length) {
      const tree = this.seedTrees[s.seedIndex++]!;
      const r = await this.consider(tree, 'seed', [], batch, emitted, 1, false, true);
      if (r.kind === 'accept') return r.pending;
    }
    for (let attempt = 1; attempt <= c.maxRetries; attempt++) {
      const span = c.initDepth[1] - c.initDepth[0] + 1;
      const k = s.initCount++;
      const d = c.initDepth[0] + (k % span);
      const method = Math.floor(k / span) % 2 === 0 ? 'full' : 'grow';
      const tree = randomTree(this.rng, this.prims, d, method);
      const r = await this.consider(tree, 'init', [], batch, emitted, attempt, attempt === c.maxRetries, false);
      if (r.kind === 'accept') return r.pending;
    }
    s.counters.exhausted++;
    return null;
  }

  private selectParents(): [Individual, Individual] {
    const c = this.s.config;
    const pop = this.s.population;
    if (c.mode === 'generational') {
      const tournament = () => {
        let best = this.rng.pick(pop);
        for (let i = 1; i < c.tournamentSize; i++) {
          const x = this.rng.pick(pop);
          if (better(x, best) < 0) best = x;
        }
        return best;
      };
      return [tournament(), tournament()];
    }
    // Steady state: a random sample without replacement, its topK best are eligible.
    const idx = pop.map((_, i) => i);
    const m = Math.min(c.sampleSize, pop.length);
    for (let i = 0; i < m; i++) {
      const j = i + this.rng.int(idx.length - i);
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    const top = idx
      .slice(0, m)
      .map((i) => pop[i]!)
      .sort(better)
      .slice(0, Math.min(c.topK, m));
    return [this.rng.pick(top), this.rng.pick(top)];
  }

  private async makeChild(batch: Pending[], emitted: IndividualRecord[]): Promise<Pending | null> {
    const c = this.s.config;
    for (let attempt = 1; attempt <= c.maxRetries; attempt++) {
      const [p1, p2] = this.selectParents();
      let tree = p1.tree;
      let parents = [p1.id];
      let crossed = false;
      let mutated: 'point' | 'subtree' | null = null;
      if (this.rng.next() < c.crossoverProb) {
        tree = crossover(this.rng, p1.tree, p2.tree);
        parents = p1.id === p2.id ? [p1.id] : [p1.id, p2.id];
        crossed = true;
      }
      if (this.rng.next() < c.mutationProb) {
        if (this.rng.next() < c.pointMutationShare) {
          const m = pointMutation(this.rng, tree, this.prims);
          if (m) {
            tree = m;
            mutated = 'point';
          }
        }
        if (!mutated) {
          tree = subtreeMutation(this.rng, tree, this.prims, c.mutationDepth);
          mutated = 'subtree';
        }
      }
      const origin: Origin = crossed
        ? mutated
          ? (`crossover+mutation-${mutated}` as const)
          : 'crossover'
        : mutated
          ? (`mutation-${mutated}` as const)
          : 'copy';
      const r = await this.consider(tree, origin, parents, batch, emitted, attempt, attempt === c.maxRetries, false);
      if (r.kind === 'accept') return r.pending;
    }
    this.s.counters.exhausted++;
    return null;
  }

  /**
   * Steps 1-4 of the pipeline for one candidate. `lastAttempt`: a duplicate is accepted
   * (sharing its fitness) instead of regenerated. `isSeed`: duplicates are skipped, never
   * accepted.
   */
  private async consider(
    raw: Tree,
    origin: Origin,
    parents: number[],
    batch: Pending[],
    emitted: IndividualRecord[],
    attempt: number,
    lastAttempt: boolean,
    isSeed: boolean,
  ): Promise<Considered> {
    const s = this.s;
    const c = s.config;
    const tree = this.lang.simplify(raw);
    if (depth(tree) > c.maxDepth || size(tree) > c.maxSize) {
      s.counters.overLimit++;
      return { kind: 'retry' };
    }
    const infix = toInfix(tree);
    const canonical = toInfix(this.lang.canonicalize(tree));
    const hash = sha1(canonical);
    const base = {
      tree,
      infix,
      canonical,
      hash,
      origin,
      parents,
      step: s.step + 1,
      attempts: attempt,
      phase: s.phase,
    };

    const dup = this.findDuplicate(batch, (r) => r.hash === hash, lookup(s.hashCache, hash));
    if (dup) {
      s.counters.duplicates++;
      if (!lastAttempt || isSeed || dup.invalid !== null) return { kind: 'retry' };
      return { kind: 'accept', pending: this.shared({ ...base, fingerprint: null }, 'hash', dup) };
    }

    const reason =
      this.lang.validate(tree) ??
      outsidePrimitives(tree, this.prims) ??
      (this.deps.probe === null || !this.lang.probe ? null : probeTree(tree, this.deps.probe ?? defaultProbeData()));
    if (reason) {
      await this.recordInvalid({ ...base, fingerprint: null }, reason, emitted);
      return { kind: 'retry' };
    }

    let fingerprint: string | null = null;
    if (this.deps.fingerprint) {
      const fp = await this.deps.fingerprint(tree, { infix, hash });
      if (typeof fp !== 'string') {
        await this.recordInvalid({ ...base, fingerprint: null }, fp.invalid, emitted);
        return { kind: 'retry' };
      }
      fingerprint = fp;
      const fdup = this.findDuplicate(batch, (r) => r.fingerprint === fp, lookup(s.fpCache, fp));
      if (fdup) {
        s.counters.duplicates++;
        if (!lastAttempt || isSeed || fdup.invalid !== null) return { kind: 'retry' };
        return { kind: 'accept', pending: this.shared({ ...base, fingerprint }, 'fingerprint', fdup) };
      }
    }

    const record: IndividualRecord = {
      ...base,
      id: s.nextId++,
      fingerprint,
      fitness: NaN,
      invalid: null,
      cacheHit: 'none',
      sharedWith: null,
    };
    return { kind: 'accept', pending: { record, shareIndex: null } };
  }

  private findDuplicate(
    batch: Pending[],
    match: (r: IndividualRecord) => boolean,
    cached: CacheEntry | undefined,
  ): { id: number; invalid: string | null; fitness: number; batchIndex: number | null } | null {
    if (cached) return { ...cached, batchIndex: null };
    const i = batch.findIndex((p) => match(p.record));
    if (i < 0) return null;
    const r = batch[i]!.record;
    return { id: r.sharedWith ?? r.id, invalid: null, fitness: NaN, batchIndex: batch[i]!.shareIndex ?? i };
  }

  private shared(
    base: Omit<IndividualRecord, 'id' | 'fitness' | 'invalid' | 'cacheHit' | 'sharedWith'>,
    kind: CacheHit,
    dup: { id: number; fitness: number; batchIndex: number | null },
  ): Pending {
    const record: IndividualRecord = {
      ...base,
      id: this.s.nextId++,
      fitness: dup.fitness,
      invalid: null,
      cacheHit: kind,
      sharedWith: dup.id,
    };
    return { record, shareIndex: dup.batchIndex };
  }

  private async recordInvalid(
    base: Omit<IndividualRecord, 'id' | 'fitness' | 'invalid' | 'cacheHit' | 'sharedWith'>,
    reason: string,
    emitted: IndividualRecord[],
  ): Promise<void> {
    const s = this.s;
    const record: IndividualRecord = {
      ...base,
      id: s.nextId++,
      fitness: Infinity,
      invalid: reason,
      cacheHit: 'none',
      sharedWith: null,
    };
    s.counters.invalid++;
    this.remember('hashCache', record.hash, { fitness: Infinity, id: record.id, invalid: reason });
    emitted.push(record);
    await this.deps.onIndividual?.(record);
  }
}

function lookup(cache: Record<string, CacheEntry>, key: string): CacheEntry | undefined {
  return Object.hasOwn(cache, key) ? cache[key] : undefined;
}

function toIndividual(r: IndividualRecord): Individual {
  return {
    id: r.id,
    tree: r.tree,
    infix: r.infix,
    canonical: r.canonical,
    hash: r.hash,
    fingerprint: r.fingerprint,
    fitness: r.fitness,
    origin: r.origin,
    parents: r.parents,
    step: r.step,
  };
}

const NONFINITE: Record<string, number> = { Infinity: Infinity, '-Infinity': -Infinity, NaN: NaN };

/** JSON with ±Infinity/NaN numbers written as the strings "Infinity", "-Infinity", "NaN". */
export function serializeState(state: GpState): string {
  return JSON.stringify(state, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
}

export function parseState(text: string): GpState {
  let state: GpState;
  try {
    state = JSON.parse(text, (_k, v) => (typeof v === 'string' && v in NONFINITE ? NONFINITE[v] : v)) as GpState;
  } catch (e) {
    throw new InputError(`gp state: bad JSON: ${(e as Error).message}`);
  }
  if (!state || typeof state !== 'object' || !Array.isArray(state.population) || !state.rng || !state.config) {
    throw new InputError('gp state: not a symprune GP state (missing population, rng or config)');
  }
  return state;
}
