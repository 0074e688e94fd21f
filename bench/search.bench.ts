/**
 * The search's throughput on the bundled model (or, before it is built, a fresh model of
 * the bundled config on synthetic tokens):
 *  1. one candidate evaluation (masks over all layers + perplexity of the pruned model at
 *     the full budget, in a worker) beside one dense forward over the same tokens, in the
 *     same worker (aim <= 1.3x);
 *  2. candidate evaluations per minute with 1 and 2 workers, same candidates, same decisions;
 *  3. over a short real search, the share of perplexity evaluations that mask fingerprints
 *     and the two-fidelity scheme saved, against paying the full budget for every candidate.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, saveModel } from '../src/onnx/model-io.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { parseTrainConfig } from '../src/train/config.ts';
import { BUNDLED_MODEL_DIR, REPO_ROOT } from '../src/model/load.ts';
import { EvalPool } from '../src/eval/pool.ts';
import { CandidateEvaluator } from '../src/eval/fitness.ts';
import type { MaskReply, PplReply } from '../src/eval/worker.ts';
import { prepareData } from '../src/search/setup.ts';
import { runSearch } from '../src/search/run.ts';
import { SEARCH_DEFAULTS, shortTokens, type SearchSettings } from '../src/search/settings.ts';
import { canonicalHash, parseMetric, toInfix } from '../src/search-space/index.ts';
import { openDatabase } from '../src/store/schema.ts';
import { RunStore } from '../src/store/store.ts';

const METRICS = [
  'W',
  'mul(W,sqrt(X))',
  'mul(abs(mul(W,W)),mms(G))',
  'add(mul(W,sqrt(X)),mul(W,G))',
  'mul(W,G)',
  'add(W,G)',
  'mul(sqrt(W),X)',
  'add(mul(W,X),G)',
];

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'symprune-search-bench-'));
  const bundled = join(BUNDLED_MODEL_DIR, 'model.onnx');
  let modelDir = BUNDLED_MODEL_DIR;
  let fitnessData = 'brown:search';
  let calibData = 'brown:calib';
  if (!existsSync(bundled)) {
    const cfgPath = join(REPO_ROOT, 'models', 'brown-llama.train.json');
    const cfg = parseTrainConfig(JSON.parse(readFileSync(cfgPath, 'utf8')), cfgPath, join(REPO_ROOT, 'models'));
    await saveModel(buildLlama(cfg.model, initLlamaWeights(cfg.model, 1)), join(dir, 'model.onnx'));
    const ids = (n: number, seed: number) => Uint16Array.from({ length: n }, (_, i) => (i * 2654435761 + seed * 97) % cfg.model.vocabSize);
    writeFileSync(join(dir, 'fit.bin'), ids(65536, 1));
    writeFileSync(join(dir, 'calib.bin'), ids(65536, 2));
    modelDir = dir;
    fitnessData = join(dir, 'fit.bin');
    calibData = join(dir, 'calib.bin');
    console.log(`bundled model not built yet: a fresh model of ${cfgPath} on synthetic tokens`);
  } else console.log(`bundled model ${bundled}`);
  const model = await loadModel(join(modelDir, 'model.onnx'));
  void model;

  const settings: SearchSettings = {
    ...SEARCH_DEFAULTS,
    modelSha256: 'bench',
    batch: 2,
    iterations: 0,
    generations: null,
    fitnessData,
    calibData,
    nsamples: 16,
    baselines: [],
  };
  const tokenizerPath = existsSync(join(modelDir, 'tokenizer.json')) ? join(modelDir, 'tokenizer.json') : undefined;
  const data = await prepareData(settings, { modelPath: join(modelDir, 'model.onnx'), tokenizerPath, dbPath: join(dir, 'bench.sqlite') }, {});
  const params = data.layers.reduce((a, l) => a + l.out * l.in, 0);
  console.log(`${data.layers.length} prunable layers, ${(params / 1e6).toFixed(2)} M prunable weights; full budget ${settings.evalTokens} tokens, short ${shortTokens(settings)}, seqlen ${settings.seqlen}`);
  const url = new URL('../src/eval/worker-entry.mjs', import.meta.url);

  // 1. One candidate vs one dense forward, same worker, same tokens.
  {
    const pool = new EvalPool({ filename: url, workerData: data.workerInit, threads: 1, taskTimeoutMs: 0 });
    const dense = async () => {
      const r = await pool.run<PplReply>({ kind: 'dense', maxTokens: settings.evalTokens });
      if (r.status !== 'ok') throw new Error(r.error);
      return r.seconds;
    };
    await dense();
    const denseS: number[] = [];
    const maskS: number[] = [];
    const candS: number[] = [];
    for (const m of METRICS.slice(0, 4)) {
      denseS.push(await dense());
      const t0 = performance.now();
      const mk = await pool.run<MaskReply>({ kind: 'mask', tree: parseMetric(m) });
      if (mk.status !== 'ok') throw new Error(mk.status === 'error' ? mk.error : mk.status);
      const p = await pool.run<PplReply>({ kind: 'ppl', tree: parseMetric(m), fingerprint: mk.value.fingerprint, maxTokens: settings.evalTokens });
      if (p.status !== 'ok') throw new Error(p.error);
      candS.push((performance.now() - t0) / 1000);
      maskS.push(mk.seconds);
    }
    await pool.close();
    const d = median(denseS);
    const c = median(candS);
    console.log(`one dense forward over ${settings.evalTokens} tokens (1 worker, 1 thread): ${d.toFixed(2)} s`);
    console.log(`one candidate (masks ${median(maskS).toFixed(2)} s + pruned forward): ${c.toFixed(2)} s = ${(c / d).toFixed(2)}x the dense forward (aim <= 1.3x)`);
  }

  // 2. Candidate evaluations per minute, 1 and 2 workers, the search's own fitness scheme.
  const perMinute: number[] = [];
  for (const workers of [1, 2]) {
    const pool = new EvalPool({ filename: url, workerData: data.workerInit, threads: workers, taskTimeoutMs: 0 });
    await Promise.all(Array.from({ length: workers }, () => pool.run({ kind: 'dense', maxTokens: settings.seqlen })));
    const db = openDatabase(join(dir, `rate-${workers}.sqlite`));
    const store = RunStore.create(db, { config: { bench: workers }, seed: 0, modelPath: 'bench', modelSha256: 'bench', dataHashes: {}, versions: {} });
    const ev = new CandidateEvaluator(pool, store, { shortTokens: shortTokens(settings), fullTokens: settings.evalTokens, margin: settings.margin });
    const t0 = performance.now();
    let id = 1;
    for (let i = 0; i < METRICS.length; i += 2) {
      const batch = await Promise.all(
        METRICS.slice(i, i + 2).map(async (m) => {
          const tree = parseMetric(m);
          const hash = canonicalHash(tree);
          const fp = await ev.fingerprint(tree, { infix: toInfix(tree), hash }, 0);
          return { id: 0, tree, infix: toInfix(tree), hash, fingerprint: typeof fp === 'string' ? fp : null };
        }),
      );
      for (const c of batch) c.id = id++;
      await ev.evaluate(batch, i / 2);
    }
    const minutes = (performance.now() - t0) / 60000;
    perMinute.push(METRICS.length / minutes);
    console.log(`${workers} worker${workers > 1 ? 's' : ''}: ${(METRICS.length / minutes).toFixed(1)} candidate evaluations per minute (${ev.counters.short} short + ${ev.counters.full} full perplexity runs for ${METRICS.length} candidates)`);
    db.close();
    await pool.close();
  }
  console.log(`2 workers vs 1: ${(perMinute[1]! / perMinute[0]!).toFixed(2)}x`);

  // 3. What fingerprints and fidelity saved over a short search.
  const db = join(dir, 'short-search.sqlite');
  const s = await runSearch({
    db,
    resume: false,
    model: { modelPath: join(modelDir, 'model.onnx'), tokenizerPath: existsSync(join(modelDir, 'tokenizer.json')) ? join(modelDir, 'tokenizer.json') : undefined },
    settings: { population: 12, iterations: 24, batch: 2, fitnessData, calibData, nsamples: 16, baselines: [], seed: 1 },
    workers: 2,
  });
  const d = openDatabase(db, { readonly: true });
  const one = (sql: string): number => d.prepare(sql).pluck().get() as number;
  const evaluatedCandidates = one(`SELECT COUNT(*) FROM individuals WHERE invalid IS NULL OR invalid LIKE '%while masking%'`);
  const dups = one(`SELECT COUNT(*) FROM mask_duplicates`);
  const shared = one(`SELECT COUNT(*) FROM individuals WHERE shared_with IS NOT NULL`);
  const shortRuns = one(`SELECT COUNT(*) FROM evaluations WHERE fidelity = 'short' AND status = 'ok'`);
  const fullRuns = one(`SELECT COUNT(*) FROM evaluations WHERE fidelity = 'full' AND status = 'ok'`);
  d.close();
  const wouldPay = evaluatedCandidates + dups; // every candidate with valid masks at the full budget
  const frac = shortTokens(settings) / settings.evalTokens;
  const paidUnits = fullRuns + shortRuns * frac; // in full-budget evaluations
  console.log(
    `short search (population 12, 24 iterations, ${s.seconds.toFixed(0)} s): ${wouldPay} candidates with valid masks; ` +
      `${dups} had masks equal to an evaluated one (fingerprint: ${((100 * dups) / wouldPay).toFixed(0)}% of perplexity evaluations saved), ${shared} took a shared fitness; ` +
      `${shortRuns} short + ${fullRuns} full runs = ${paidUnits.toFixed(1)} full-budget equivalents instead of ${wouldPay}: ${(100 * (1 - paidUnits / wouldPay)).toFixed(0)}% of evaluation cost saved by fingerprints and fidelity together`,
  );
}
