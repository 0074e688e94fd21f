// The GP engine: determinism, exact resume from serialised state, dedup and fitness
// sharing, invalid trees kept from the evaluator, batch evaluation, both modes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { InputError } from '../src/errors.ts';
import {
  GpEngine,
  resolveConfig,
  type EvalRequest,
  type GpConfig,
  type GpDeps,
  type IndividualRecord,
} from '../src/gp/index.ts';
import {
  canonicalHash,
  compileTree,
  probeTree,
  randomTerminalData,
  size,
  depth,
  toInfix,
  unstructuredMask,
  validateTree,
  type Tree,
} from '../src/search-space/index.ts';

const DATA = randomTerminalData('gp-fitness', 8, 32, { profile: 'llm' });

/** A deterministic stand-in fitness: how far the metric's masks are from magnitude pruning's. */
function maskFitness(tree: Tree): number {
  const s = compileTree(tree)(DATA);
  const m = unstructuredMask(s, DATA.rows, DATA.cols, 0.5).mask;
  const ref = unstructuredMask(DATA.W, DATA.rows, DATA.cols, 0.5).mask;
  let agree = 0;
  for (let i = 0; i < m.length; i++) if (m[i] === ref[i]) agree++;
  return 1 - agree / m.length + size(tree) * 1e-4;
}

function maskFingerprint(tree: Tree): string {
  const s = compileTree(tree)(DATA);
  return createHash('sha1').update(unstructuredMask(s, DATA.rows, DATA.cols, 0.5).mask).digest('hex');
}

interface Log {
  records: IndividualRecord[];
  batches: EvalRequest[][];
}

function deps(log: Log, opts: { fingerprint?: boolean } = {}): GpDeps {
  return {
    evaluate: async (batch) => {
      log.batches.push(batch);
      return batch.map((r) => maskFitness(r.tree));
    },
    fingerprint: opts.fingerprint ? async (t) => maskFingerprint(t) : undefined,
    onIndividual: (r) => {
      log.records.push(structuredClone(r));
    },
  };
}

const summary = (rs: IndividualRecord[]) =>
  rs.map((r) => `${r.id}:${r.infix}:${r.fitness}:${r.origin}:${r.parents.join('+')}:${r.cacheHit}:${r.invalid ?? ''}`);

async function runFor(config: Partial<GpConfig>, iterations: number, opts: { fingerprint?: boolean } = {}) {
  const log: Log = { records: [], batches: [] };
  const engine = GpEngine.create(config, deps(log, opts));
  await engine.run({ iterations });
  return { engine, log };
}

test('the same seed gives the same sequence of individuals; another seed does not', async () => {
  const a = await runFor({ seed: 'alpha', populationSize: 20 }, 60);
  const b = await runFor({ seed: 'alpha', populationSize: 20 }, 60);
  const c = await runFor({ seed: 'beta', populationSize: 20 }, 60);
  assert.ok(a.log.records.length > 80);
  assert.deepEqual(summary(a.log.records), summary(b.log.records));
  assert.equal(a.engine.serialize(), b.engine.serialize());
  assert.notDeepEqual(summary(a.log.records).slice(0, 20), summary(c.log.records).slice(0, 20));
});

test('a stopped and resumed run continues exactly as an uninterrupted one', async () => {
  const cases: Partial<GpConfig>[] = [
    { seed: 'resume-ss', populationSize: 16 },
    { seed: 'resume-batch', populationSize: 16, batchSize: 3, seedKnown: true },
    { seed: 'resume-gen', populationSize: 12, mode: 'generational', batchSize: 4, elitism: 2 },
  ];
  for (const config of cases) {
    for (const fingerprint of [false, true]) {
      const full = await runFor(config, 40, { fingerprint });
      // Stop after k steps (some inside the init phase), serialise, restore with fresh deps.
      for (const stopAt of [3, 25]) {
        const log: Log = { records: [], batches: [] };
        let engine = GpEngine.create(config, deps(log, { fingerprint }));
        while (engine.state.step < stopAt) await engine.step();
        const saved = engine.serialize();
        engine = GpEngine.restore(saved, deps(log, { fingerprint }));
        assert.equal(engine.serialize(), saved);
        await engine.run({ iterations: 40 });
        assert.deepEqual(summary(log.records), summary(full.log.records), `${config.seed} fp=${fingerprint} stop=${stopAt}`);
        assert.equal(engine.serialize(), full.engine.serialize());
      }
    }
  }
});

test('steady state: population size holds, one evaluation per iteration, children are new metrics', async () => {
  const { engine, log } = await runFor({ seed: 'steady', populationSize: 20 }, 50);
  const s = engine.state;
  assert.equal(s.population.length, 20);
  assert.equal(s.iterations, 50);
  // init: 20 evaluations; then one child per iteration (or a cache hit after exhausted retries)
  const evaluated = log.batches.flat().length;
  assert.equal(evaluated, s.counters.evaluated);
  assert.ok(evaluated <= 70 && evaluated >= 65, `evaluated ${evaluated}`);
  for (const b of log.batches) assert.equal(b.length, 1);
  // Every evaluated metric is canonically new.
  const hashes = log.batches.flat().map((r) => r.hash);
  assert.equal(new Set(hashes).size, hashes.length);
  for (const r of log.batches.flat()) assert.equal(r.hash, canonicalHash(r.tree));
  // Children record their parents and how they were made.
  const children = log.records.filter((r) => r.phase === 'evolve' && r.invalid === null);
  assert.ok(children.length >= 45);
  for (const r of children) {
    assert.ok(r.parents.length >= 1 && r.parents.length <= 2);
    assert.match(r.origin, /^(crossover|mutation-point|mutation-subtree|crossover\+mutation-(point|subtree)|copy)$/);
    assert.ok(depth(r.tree) <= 8 && size(r.tree) <= 32);
  }
  // The worst are removed: the population holds the best fitnesses seen among valid individuals.
  const valid = log.records.filter((r) => r.invalid === null).map((r) => r.fitness).sort((x, y) => x - y);
  const pop = s.population.map((i) => i.fitness).sort((x, y) => x - y);
  assert.deepEqual(pop, valid.slice(0, 20));
});

test('invalid trees get +inf with a reason and never reach the evaluator', async () => {
  const { engine, log } = await runFor({ seed: 'invalid', populationSize: 30 }, 40);
  const invalid = log.records.filter((r) => r.invalid !== null);
  assert.ok(invalid.length > 5, `invalid ${invalid.length}`);
  const evaluatedIds = new Set(log.batches.flat().map((r) => r.id));
  for (const r of invalid) {
    assert.equal(r.fitness, Infinity);
    assert.ok(!evaluatedIds.has(r.id));
    assert.ok(validateTree(r.tree) !== null || probeTree(r.tree) !== null, `${r.infix}: ${r.invalid}`);
  }
  for (const r of log.batches.flat()) assert.equal(probeTree(r.tree), null, r.infix);
  assert.ok(invalid.some((r) => /only X/.test(r.invalid!)));
  assert.ok(engine.state.population.every((i) => Number.isFinite(i.fitness)));
  // +inf survives serialisation
  const restored = GpEngine.restore(engine.serialize(), deps({ records: [], batches: [] }));
  const anInvalid = invalid[0]!;
  assert.equal(restored.state.hashCache[anInvalid.hash]!.fitness, Infinity);
});

test('evaluator verdicts: NaN fitness and explicit invalid results are recorded and kept out', async () => {
  const records: IndividualRecord[] = [];
  let calls = 0;
  const engine = GpEngine.create(
    { seed: 'verdicts', populationSize: 10 },
    {
      evaluate: async (batch) =>
        batch.map((r) => {
          calls++;
          if (calls % 5 === 0) return NaN;
          if (calls % 7 === 0) return { fitness: 3, invalid: 'perplexity diverged', info: { ppl: 1e9 } };
          return { fitness: maskFitness(r.tree), info: { call: calls } };
        }),
      onIndividual: (r) => {
        records.push(r);
      },
    },
  );
  await engine.run({ iterations: 20 });
  const nan = records.filter((r) => r.invalid === 'evaluator returned NaN');
  const div = records.filter((r) => r.invalid === 'perplexity diverged');
  assert.ok(nan.length > 0 && div.length > 0);
  for (const r of [...nan, ...div]) assert.equal(r.fitness, Infinity);
  assert.deepEqual(div[0]!.info, { ppl: 1e9 });
  assert.equal(engine.state.population.length, 10);
  assert.ok(engine.state.population.every((i) => Number.isFinite(i.fitness)));
});

test('equal fingerprints share one fitness: duplicates are regenerated, or share after maxRetries', async () => {
  // Fingerprint = which of two classes; almost every child duplicates one, so slots exhaust
  // their retries and share a fitness instead of being evaluated.
  const evaluated: EvalRequest[] = [];
  const records: IndividualRecord[] = [];
  const engine = GpEngine.create(
    { seed: 'fp', populationSize: 4, maxRetries: 3 },
    {
      evaluate: async (batch) => {
        evaluated.push(...batch);
        return batch.map((r) => maskFitness(r.tree));
      },
      fingerprint: async (t) => (toInfix(t).includes('G') ? 'with-G' : 'without-G'),
      onIndividual: (r) => {
        records.push(r);
      },
    },
  );
  await engine.run({ iterations: 10 });
  assert.equal(evaluated.length, 2, 'only one evaluation per fingerprint class');
  const shared = records.filter((r) => r.cacheHit === 'fingerprint');
  assert.ok(shared.length >= 2);
  for (const r of shared) {
    const src = records.find((x) => x.id === r.sharedWith)!;
    assert.equal(r.fitness, src.fitness);
    assert.equal(r.fingerprint, src.fingerprint);
    assert.equal(r.attempts, 3);
  }
  assert.ok(engine.state.counters.duplicates > 10);
  assert.equal(engine.state.counters.cacheHits, shared.length + records.filter((r) => r.cacheHit === 'hash').length);
});

test('batches: one evaluator call per step with up to batchSize new metrics', async () => {
  const { engine, log } = await runFor({ seed: 'batch', populationSize: 12, batchSize: 4 }, 10, { fingerprint: true });
  assert.equal(log.batches.length, 3 + 10); // init 12 = 3 x 4, then one call per iteration
  for (const b of log.batches) assert.ok(b.length <= 4 && b.length >= 1);
  assert.equal(engine.state.population.length, 12);
  const fps = log.batches.flat().map((r) => r.fingerprint);
  assert.equal(new Set(fps).size, fps.length, 'no two evaluated metrics share a fingerprint');
});

test('seeding with known metrics puts them first in the initial population', async () => {
  const { log } = await runFor({ seed: 'seeded', populationSize: 10, seedKnown: true, seeds: ['mul(W,G)'] }, 1);
  const seeds = log.records.filter((r) => r.origin === 'seed').map((r) => r.infix);
  assert.deepEqual(seeds, ['W', 'mul(W,sqrt(X))', 'add(mul(W,sqrt(X)),mul(W,G))', 'mul(sqr(W),mms(G))', 'mul(W,G)']);
  assert.deepEqual(log.records.slice(0, 5).map((r) => r.id), [1, 2, 3, 4, 5]);
  // Without G, seeds using it are recorded invalid and no tree uses G.
  const noG = await runFor({ seed: 'seeded', populationSize: 10, seedKnown: true, terminals: ['W', 'X'] }, 5);
  assert.ok(noG.log.records.some((r) => r.origin === 'seed' && /terminal G/.test(r.invalid ?? '')));
  for (const r of noG.log.batches.flat()) assert.ok(!r.infix.includes('G'), r.infix);
});

test('generational mode: tournament selection, elites kept, generations counted', async () => {
  const { engine, log } = await runFor({ seed: 'gen', mode: 'generational', populationSize: 10, elitism: 2, batchSize: 4 }, 12);
  // 8 offspring per generation in batches of 4 -> a generation every 2 iterations
  assert.equal(engine.state.generation, 6);
  assert.equal(engine.state.population.length, 10);
  const best = Math.min(...log.records.filter((r) => r.invalid === null).map((r) => r.fitness));
  assert.equal(engine.best()!.fitness, best, 'elitism keeps the best metric ever found');
});

test('a failed step rolls back, and retrying it gives the same individuals', async () => {
  const log: Log = { records: [], batches: [] };
  let fail = true;
  const d = deps(log);
  const engine = GpEngine.create(
    { seed: 'rollback', populationSize: 8 },
    {
      ...d,
      evaluate: async (b) => {
        if (fail && engine.state.phase === 'evolve') {
          fail = false;
          throw new Error('worker died');
        }
        return d.evaluate(b);
      },
    },
  );
  while (engine.state.phase === 'init') await engine.step();
  const before = engine.serialize();
  await assert.rejects(engine.step(), /worker died/);
  assert.equal(engine.serialize(), before);
  await engine.step();
  const ref = await runFor({ seed: 'rollback', populationSize: 8 }, 1);
  assert.equal(engine.serialize(), ref.engine.serialize());
});

test('bad configuration and bad state are InputErrors', () => {
  const bad: [Partial<GpConfig>, RegExp][] = [
    [{ populationSize: 1 }, /populationSize/],
    [{ crossoverProb: 1.5 }, /crossoverProb/],
    [{ crossoverProb: 0, mutationProb: 0 }, /both be 0/],
    [{ initDepth: [4, 3] }, /initDepth/],
    [{ terminals: ['X'] }, /must include W or G/],
    [{ unaryOps: ['sqr', 'cube' as never] }, /'cube' is not a unary operator/],
    [{ mode: 'island' as never }, /mode/],
    [{ mode: 'generational', elitism: 50 }, /elitism/],
  ];
  for (const [c, re] of bad) assert.throws(() => resolveConfig(c), (e: unknown) => e instanceof InputError && re.test(e.message));
  assert.throws(() => GpEngine.restore('{not json', deps({ records: [], batches: [] })), /gp state: bad JSON/);
  assert.throws(() => GpEngine.restore('{"a": 1}', deps({ records: [], batches: [] })), /not a symprune GP state/);
  assert.throws(() => GpEngine.create({ seeds: ['mul(W'] }, deps({ records: [], batches: [] })), InputError);
});

test('a search that can find no usable metric stops with a clear error instead of spinning', async () => {
  // The probe makes every tree constant within rows: all W values equal and X absent.
  const flat = { rows: 4, cols: 8, W: new Float32Array(32).fill(0.5), G: null, X: new Float32Array(8).fill(1) };
  const engine = GpEngine.create(
    { seed: 'stuck', populationSize: 4, terminals: ['W'], maxRetries: 5 },
    { evaluate: async (b) => b.map(() => 1), probe: flat },
  );
  await assert.rejects(engine.run({ iterations: 5 }), (e: unknown) => e instanceof InputError && /no usable new metric in 20 consecutive steps/.test(e.message));
});
