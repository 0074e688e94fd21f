/**
 * A search on a model over its memory budget evaluates candidates block by block
 * (src/eval/streamed-candidates.ts) instead of refusing: with a fixed seed it must give the
 * individuals, mask fingerprints, evaluations and baselines of the same search in memory
 * (perplexities within 1e-5 relative), on an ONNX model (two settings, G from a statistics
 * file, X computed block by block) and on a bfloat16 Hugging Face folder (SparseGPT among the
 * baselines); and the streamed evaluator answers each task as the in-memory worker does. Real
 * worker threads, onnxruntime and SQLite on tiny models.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { searchFixture, TINY } from './support/search-fixture.ts';
import { structuredTokens } from './support/token-stream.ts';
import { makeCheckpoint } from './support/hf-checkpoint.ts';
import { discoverLayers, readLayerWeight } from '../src/prune/discover.ts';
import { LayerStatsFile, writeStatsFile } from '../src/prune/stats-file.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { readStats } from '../src/eval/job.ts';
import { CandidateWorker, type MaskReply, type PplReply, type WorkerTask } from '../src/eval/candidate-worker.ts';
import { StreamedCandidates } from '../src/eval/streamed-candidates.ts';
import { parseMetric } from '../src/search-space/parse.ts';
import { runSearch, type RequestedSettings } from '../src/search/run.ts';
import { searchMemoryBytes, streamedSearchBytes } from '../src/search/memory.ts';
import { STREAMED_BATCH } from '../src/search/streamed-setup.ts';
import { settingsFields } from '../src/search/settings.ts';
import { resolveModel } from '../src/model/load.ts';
import { openModelSource } from '../src/model/source.ts';
import { openDatabase } from '../src/store/schema.ts';
import type { GpOptions } from '../src/search/settings.ts';
import { sympruneSync } from './support/spawn-cli.ts';
import { assertConsistent, dump, sameSearch, searchKilledAt } from './support/search-log.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-search-streamed-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const onnxDir = join(dir, 'onnx');
const hfDir = join(dir, 'hf');
mkdirSync(onnxDir);
const { model, ready: onnxReady } = searchFixture(onnxDir, { fitTokens: 4096, calibTokens: 2048 });
const ready = (async () => {
  await onnxReady;
  // Statistics with G: both runs read the same G and X, so their masks are the same bits.
  const layers = discoverLayers(model);
  const byName = new Map(layers.map((l) => [l.name, l]));
  const G = (l: { name: string }) => readLayerWeight(model, byName.get(l.name)!).map((v, i) => Math.abs(v) * (1 + (i % 7) * 0.1));
  writeStatsFile(join(onnxDir, 'stats.safetensors'), layers, (l) => ({ G: G(l), X: Float32Array.from({ length: l.in }, (_, c) => 1 + (c % 5) * 0.3) }));
  // G alone: the search computes X and copies G into its own statistics file, one layer at a time.
  writeStatsFile(join(onnxDir, 'g.safetensors'), layers, (l) => ({ G: G(l), X: null }), {}, { G: true, X: false });
  await makeCheckpoint(hfDir, { ...TINY, layers: 3 }, { dtype: 'BF16', seed: 5 });
  writeFileSync(join(hfDir, 'fit.bin'), structuredTokens(4096, 1));
  writeFileSync(join(hfDir, 'calib.bin'), structuredTokens(2048, 2));
})();

const EVAL_TOKENS = 1024;
const SEQLEN = 32;
const NSAMPLES = 4;

/** A budget the local pool does not fit (even one thread) and block by block does. */
async function streamingBudget(modelDir: string): Promise<number> {
  const source = await openModelSource(resolveModel(modelDir));
  try {
    const weights = 4 * (source.model.graph!.initializer ?? []).reduce((a, t) => a + (t.dims ?? []).reduce((p: number, d) => p * Number(d), 1), 0);
    const streamed = streamedSearchBytes(source, discoverLayers(source.model), { seqlen: SEQLEN, fitnessWindows: EVAL_TOKENS / SEQLEN, calibrationWindows: NSAMPLES, batchSize: STREAMED_BATCH });
    const inMemory = searchMemoryBytes(weights, 1);
    assert.ok(streamed < inMemory, `block by block ${streamed} bytes, in memory ${inMemory}`);
    return Math.floor((streamed + inMemory) / 2);
  } finally {
    await source.close();
  }
}

async function search(name: string, modelDir: string, maxMemory: number, settings: RequestedSettings, gp: GpOptions): Promise<{ db: string; lines: string[] }> {
  const db = join(dir, `${name}.sqlite`);
  const lines: string[] = [];
  const sum = await runSearch({
    db,
    model: { modelPath: modelDir },
    settings: {
      fitnessData: join(modelDir, 'fit.bin'),
      calibData: join(modelDir, 'calib.bin'),
      nsamples: NSAMPLES,
      seqlen: SEQLEN,
      seed: 7,
      population: 6,
      batch: 2,
      iterations: 6,
      evalTokens: EVAL_TOKENS,
      shortFraction: 0.25,
      ...settings,
    },
    gp,
    workers: 1,
    maxMemory,
    log: (l) => lines.push(l),
  });
  assert.equal(sum.status, 'finished');
  return { db, lines };
}

interface RunView {
  individuals: { id: number; hash: string; infix: string; fingerprint: string | null; fitness: number; fidelity: string | null }[];
  evaluations: { individual: number; setting: string; fidelity: string; ppl: number | null; status: string; fingerprint: string | null }[];
  baselines: { method: string; pattern: string; sparsity: number; ppl: number | null }[];
}

function read(db: string): RunView {
  const d = openDatabase(db, { readonly: true });
  try {
    return {
      individuals: d.prepare('SELECT id, hash, infix, fingerprint, fitness, fidelity FROM individuals ORDER BY id').all() as RunView['individuals'],
      evaluations: d.prepare('SELECT individual, setting, fidelity, ppl, status, fingerprint FROM evaluations ORDER BY individual, setting, fidelity').all() as RunView['evaluations'],
      baselines: d.prepare('SELECT method, pattern, sparsity, ppl FROM baselines ORDER BY method, pattern, sparsity').all() as RunView['baselines'],
    };
  } finally {
    d.close();
  }
}

const close = (a: number | null, b: number | null, what: string): void => {
  if (a === null || b === null || !Number.isFinite(b)) return assert.equal(a, b, what);
  assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(b), `${what}: ${a} vs ${b}`);
};

/** The two runs took the same decisions: same individuals and masks, same evaluations, perplexities within 1e-5. */
function assertSameRun(streamed: RunView, inMemory: RunView): void {
  assert.ok(inMemory.individuals.length >= 6, `${inMemory.individuals.length} individuals`);
  assert.deepEqual(
    streamed.individuals.map((i) => [i.id, i.hash, i.infix, i.fingerprint, i.fidelity]),
    inMemory.individuals.map((i) => [i.id, i.hash, i.infix, i.fingerprint, i.fidelity]),
  );
  for (const [k, i] of streamed.individuals.entries()) close(i.fitness, inMemory.individuals[k]!.fitness, `fitness of ${i.infix}`);
  assert.deepEqual(
    streamed.evaluations.map((e) => [e.individual, e.setting, e.fidelity, e.status, e.fingerprint]),
    inMemory.evaluations.map((e) => [e.individual, e.setting, e.fidelity, e.status, e.fingerprint]),
  );
  for (const [k, e] of streamed.evaluations.entries()) close(e.ppl, inMemory.evaluations[k]!.ppl, `evaluation of ${e.individual} at ${e.setting} (${e.fidelity})`);
  assert.deepEqual(streamed.baselines.map((b) => [b.method, b.pattern, b.sparsity]), inMemory.baselines.map((b) => [b.method, b.pattern, b.sparsity]));
  for (const [k, b] of streamed.baselines.entries()) close(b.ppl, inMemory.baselines[k]!.ppl, `baseline ${b.method} at ${b.pattern}`);
  assert.ok(streamed.evaluations.some((e) => e.status === 'ok'), 'some perplexities paid');
}

test('an ONNX model over the budget, two settings, G from a file, X computed: block by block, the in-memory run', async () => {
  await ready;
  const budget = await streamingBudget(onnxDir);
  const settings = { ...settingsFields([{ sparsity: 0.6, pattern: 'unstructured' }, { sparsity: 0.5, pattern: '2:4' }]), stats: join(onnxDir, 'g.safetensors'), baselines: ['magnitude', 'gblm'] };
  const gp = { terminals: ['W', 'G', 'X'] as GpOptions['terminals'] };
  const whole = await search('onnx-memory', onnxDir, Infinity, settings, gp);
  const streamed = await search('onnx-streamed', onnxDir, budget, settings, gp);
  assert.ok(!whole.lines.some((l) => l.includes('block by block')), whole.lines.join('\n'));
  assert.ok(streamed.lines.some((l) => l.startsWith('searching block by block')), streamed.lines.join('\n'));
  assert.ok(streamed.lines.some((l) => l.startsWith('dense statistics block by block: X')) && !streamed.lines.some((l) => l.includes(': G of')), 'X computed, G from the file');
  const [a, b] = [read(streamed.db), read(whole.db)];
  assertSameRun(a, b);
  assert.ok(b.evaluations.some((e) => e.setting === '2:4') && b.evaluations.some((e) => e.setting === '0.6:unstructured'), 'both settings evaluated');
});

test('a bfloat16 Hugging Face folder over the budget, statistics computed block by block: the in-memory run, SparseGPT included', async () => {
  await ready;
  const budget = await streamingBudget(hfDir);
  const settings = { baselines: ['magnitude', 'wanda', 'sparsegpt'] };
  const gp = { terminals: ['W', 'X'] as GpOptions['terminals'] };
  const whole = await search('hf-memory', hfDir, Infinity, settings, gp);
  const streamed = await search('hf-streamed', hfDir, budget, settings, gp);
  assert.ok(streamed.lines.some((l) => l.startsWith('dense statistics block by block: X')), streamed.lines.join('\n'));
  assert.ok(!streamed.lines.some((l) => l.includes(': G of')), 'no G for a run that never reads it');
  const [a, b] = [read(streamed.db), read(whole.db)];
  assertSameRun(a, b);
  assert.ok(a.baselines.some((x) => x.method === 'sparsegpt' && x.ppl !== null), 'SparseGPT evaluated block by block');
});

test('over the budget, a layer-wise allocation (it reads every dense layer at once) is refused in one line before any file is made', async () => {
  await ready;
  const budget = await streamingBudget(onnxDir);
  const db = join(dir, 'owl', 'run.sqlite');
  await assert.rejects(
    runSearch({ db, model: { modelPath: onnxDir }, settings: { fitnessData: join(onnxDir, 'fit.bin'), calibData: join(onnxDir, 'calib.bin'), nsamples: NSAMPLES, seqlen: SEQLEN, evalTokens: EVAL_TOKENS, allocation: { kind: 'owl', m: 5, lambda: 0.08 } }, workers: 1, maxMemory: budget }),
    (e: Error) => e.name === 'InputError' && /^allocation: a layer-wise allocation reads every layer's dense weights at once, and this model is searched block by block/.test(e.message),
  );
  assert.ok(!existsSync(join(dir, 'owl')), 'nothing written');
});

test('the streamed evaluator answers each task as the in-memory worker does: fingerprints, perplexities, masks recomputed and checked, time limit', async (t) => {
  await ready;
  const extDir = join(dir, 'ext');
  mkdirSync(extDir);
  await saveModel(model, join(extDir, 'model.onnx'), { externalData: 'always' });
  const layers = discoverLayers(model);
  const statsFile = join(onnxDir, 'stats.safetensors');
  const { G, X } = readStats(statsFile, layers, { G: true, X: true });
  const tokens = Int32Array.from(structuredTokens(2048, 1));
  const pattern = { kind: 'unstructured' as const };
  const memory = await CandidateWorker.create(
    { model, layers: layers.map((l) => ({ ...l, weight: readLayerWeight(model, l), G: G.get(l.name)!, X: X.get(l.name)! })), tokens, seqlen: SEQLEN, sparsity: 0.5, pattern },
    { id: 1, threads: 1 },
  );
  const source = await openModelSource(resolveModel(join(extDir, 'model.onnx')));
  // One parked masks set: a candidate masked before the last one has its masks computed again.
  const streamed = new StreamedCandidates({ source, layers, stats: LayerStatsFile.open(statsFile, layers, { G: false, X: true }), tokens, seqlen: SEQLEN, settings: [{ sparsity: 0.5, pattern }], threads: 1, maskSets: 1 });
  t.after(() => streamed.close());
  const inMemory = async <T>(task: WorkerTask): Promise<T> => {
    const r = await memory.run(task);
    assert.ok(r.ok, JSON.stringify(r));
    return r.value as T;
  };
  const here = async <T>(task: WorkerTask): Promise<T> => {
    const r = await streamed.run<T>(task);
    assert.equal(r.status, 'ok', JSON.stringify(r));
    return (r as { value: T }).value;
  };
  const trees = ['mul(W,sqrt(X))', 'add(W,mul(G,X))'].map((t) => parseMetric(t));
  const fps: string[] = [];
  for (const tree of trees) {
    const [a, b] = [await inMemory<MaskReply>({ kind: 'mask', tree }), await here<MaskReply>({ kind: 'mask', tree })];
    assert.equal(b.fingerprint, a.fingerprint);
    assert.equal(b.nanCount, a.nanCount);
    fps.push(a.fingerprint);
  }
  assert.notEqual(fps[0], fps[1]);
  for (const [i, tree] of trees.entries()) {
    const task: WorkerTask = { kind: 'ppl', tree, fingerprint: fps[i]!, maxTokens: 1024 };
    close((await here<PplReply>(task)).ppl, (await inMemory<PplReply>(task)).ppl, `ppl of tree ${i}`);
  }
  for (const task of [{ kind: 'method', name: 'wanda', maxTokens: 1024 }, { kind: 'method', name: 'magnitude', maxTokens: 512 }, { kind: 'dense', maxTokens: 1024 }] as WorkerTask[]) {
    const [a, b] = [await inMemory<PplReply>(task), await here<PplReply>(task)];
    close(b.ppl, a.ppl, JSON.stringify(task));
    assert.equal(b.tokens, a.tokens);
    assert.equal(b.fingerprint, a.fingerprint);
  }
  const wrong = await streamed.run({ kind: 'ppl', tree: trees[0]!, fingerprint: fps[1]!.replace(/./, (c) => (c === '0' ? '1' : '0')), maxTokens: 512 });
  assert.equal(wrong.status, 'error');
  assert.match((wrong as { error: string }).error, /differ from the coordinator's/);
  const late = await streamed.run({ kind: 'dense', maxTokens: 1024, timeoutMs: 1e-9 });
  assert.equal(late.status, 'timeout');
});

test('a search block by block killed with SIGKILL and resumed loses nothing and matches the uninterrupted run', async () => {
  await ready;
  const budget = await streamingBudget(onnxDir);
  const args = (db: string) => ['search', '--model', onnxDir, '--fitness-data', join(onnxDir, 'fit.bin'), '--data', join(onnxDir, 'calib.bin'), '--nsamples', String(NSAMPLES), '--seqlen', String(SEQLEN), '--seed', '7', '--population', '6', '--batch', '2', '--iterations', '6', '--eval-tokens', String(EVAL_TOKENS), '--short-fraction', '0.25', '--baselines', 'magnitude', '--max-memory', String(budget), '--db', db];
  const refDb = join(dir, 'resume-ref.sqlite');
  const ref = sympruneSync(args(refDb));
  assert.equal(ref.status, 0, ref.stderr);
  assert.match(ref.stdout + ref.stderr, /searching block by block/);
  const refLog = dump(refDb);
  assertConsistent(refLog);

  const db = join(dir, 'resume-killed.sqlite');
  const atKill = await searchKilledAt(args(db), db, 4);
  assert.ok(atKill, 'the run reached 4 evaluations before it finished');
  assert.equal(atKill.runs[0]!.status, 'running');
  assert.ok(atKill.progress.length < refLog.progress.length, 'killed part way');
  const res = sympruneSync(['search', '--db', db, '--resume', '--max-memory', String(budget)]);
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stdout + res.stderr, /searching block by block/);
  const after = dump(db);
  assertConsistent(after);
  for (const e of atKill.evaluations) assert.deepEqual(after.evaluations.find((x) => x.id === e.id), e, 'nothing committed before the kill changed');
  sameSearch(after, refLog);
});
