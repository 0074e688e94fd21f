/**
 * A small search database written through the store's own writer (RunStore), with a known
 * lineage, shared masks, a failed evaluation, two job queue workers, and hostile strings where
 * a crafted database could put them (a metric, a baseline's name, an error, the model path, a
 * worker's host), so the dashboard tests know every answer in advance.
 */
import { createHash } from 'node:crypto';
import { openDatabase } from '../src/store/schema.ts';
import { RunStore, type TreeFeatures } from '../src/store/store.ts';
import { WorkerLog } from '../src/store/workers.ts';
import { treeFeatures } from '../src/store/features.ts';
import { parseMetric } from '../src/search-space/parse.ts';
import { toPrunerZeroJson } from '../src/search-space/print.ts';

export const XSS_METRIC = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
export const XSS_BASELINE = '<script>window.__xss=3</script>';
export const XSS_ERROR = '<b onmouseover="window.__xss=4">worker died</b>';
export const XSS_MODEL = '/models/<svg onload="window.__xss=5">/model.onnx';
export const XSS_HOST = '<script>window.__xss=7</script>';

/** The queue's workers: the hostile one answered three perplexity jobs in its first minute and is busy; gpu2 failed one and left. */
export const WORKERS = { hostile: `${XSS_HOST}:4242`, gpu2: 'gpu2:77', from: '2026-01-01T00:00:00.000Z', to: '2026-01-01T00:01:00.000Z' };

interface Ind {
  id: number;
  infix: string;
  parents: number[];
  origin: string;
  step: number;
  fp: string | null;
  short?: number;
  full?: number;
  sharedWith?: number;
  invalid?: string;
  failed?: boolean;
}

/** The individuals: expected leaderboard (distinct masks, by fitness) is 7, 4, 2, 3, 1. */
export const INDIVIDUALS: Ind[] = [
  { id: 1, infix: 'W', parents: [], origin: 'init', step: 1, fp: 'fp1', short: 151, full: 150 },
  { id: 2, infix: 'mul(W,sqrt(X))', parents: [], origin: 'init', step: 1, fp: 'fp2', short: 141, full: 140 },
  { id: 3, infix: 'mul(W,G)', parents: [], origin: 'init', step: 2, fp: 'fp3', short: 145 },
  { id: 4, infix: 'add(mul(W,sqrt(X)),mul(W,G))', parents: [2, 3], origin: 'crossover', step: 2, fp: 'fpA', short: 138.5, full: 139 },
  { id: 5, infix: 'add(mul(sqrt(X),W),mul(G,W))', parents: [2, 3], origin: 'crossover', step: 3, fp: 'fpA', sharedWith: 4 },
  { id: 6, infix: 'exp(neg(abs(W)))', parents: [1], origin: 'mutation-point', step: 3, fp: null, invalid: 'constant: scores do not vary within any row on probe data' },
  { id: 7, infix: XSS_METRIC, parents: [4], origin: 'mutation-subtree', step: 3, fp: 'fpB', short: 137.5, full: 138 },
  { id: 8, infix: 'sqr(W)', parents: [4, 7], origin: 'crossover', step: 3, fp: 'fp8', failed: true, invalid: 'evaluation failed' },
];

const SHORT_TOKENS = 1000;
const FULL_TOKENS = 4000;

export function makeFixture(path: string): void {
  const db = openDatabase(path);
  const store = RunStore.create(db, {
    config: { pattern: 'unstructured', sparsity: 0.5, population: 4, iterations: 4, batch: 2, mode: 'steady-state', evalTokens: FULL_TOKENS, fitnessData: 'brown:search', seed: 3 },
    seed: 3,
    modelPath: XSS_MODEL,
    modelSha256: 'f'.repeat(64),
    dataHashes: { search: 'ab' },
    versions: { symprune: '0.1.0', node: process.version },
  });
  const evalIds = new Map<string, number>();
  for (const i of INDIVIDUALS) {
    const parsed = i.id === 7 ? null : parseMetric(i.infix);
    const features: TreeFeatures = parsed ? treeFeatures(parsed) : { size: 5, depth: 2, terminals: { W: 2, G: 1, X: 0 }, ops: { mul: 1, add: 1 } };
    store.addIndividual({
      id: i.id,
      infix: i.infix,
      tree: parsed ? toPrunerZeroJson(parsed) : '{"data": "<script>window.__xss=6</script>"}',
      hash: createHash('sha1').update(i.infix).digest('hex'),
      features,
      parents: i.parents,
      origin: i.origin,
      step: i.step,
      fingerprint: i.fp,
      invalid: i.invalid ?? null,
      sharedWith: i.sharedWith ?? null,
    });
    if (i.short !== undefined) evalIds.set(`${i.id} short`, store.addEvaluation({ individual: i.id, fidelity: 'short', tokens: SHORT_TOKENS, ppl: i.short, seconds: 0.5, worker: i.id % 2, status: 'ok' }));
    if (i.full !== undefined) evalIds.set(`${i.id} full`, store.addEvaluation({ individual: i.id, fidelity: 'full', tokens: FULL_TOKENS, ppl: i.full, seconds: 2, worker: i.id % 2, status: 'ok' }));
    if (i.sharedWith !== undefined) {
      const from = i.sharedWith;
      store.addEvaluation({ individual: i.id, fidelity: 'short', tokens: SHORT_TOKENS, ppl: INDIVIDUALS[from - 1]!.short!, seconds: 0, worker: null, status: 'reused', reusedFrom: evalIds.get(`${from} short`)! });
      store.setFitness(i.id, INDIVIDUALS[from - 1]!.full!, 'full');
    }
    if (i.failed) {
      store.addEvaluation({ individual: i.id, fidelity: 'short', tokens: SHORT_TOKENS, ppl: null, seconds: 1, worker: 1, status: 'error', error: XSS_ERROR });
    }
    if (i.full !== undefined) store.setFitness(i.id, i.full, 'full');
    else if (i.short !== undefined) store.setFitness(i.id, i.short + 1, 'short'); // an estimate above the best full one
  }
  const at = (s: number) => new Date(Date.parse(WORKERS.from) + s * 1000);
  const hostile = { name: WORKERS.hostile, host: XSS_HOST, pid: 4242 };
  const gpu2 = { name: WORKERS.gpu2, host: 'gpu2', pid: 77 };
  const workers = new WorkerLog(db, store.runId);
  workers.seen([hostile, gpu2], [WORKERS.hostile], at(0));
  for (const s of [10, 20, 30]) workers.jobDone({ ...hostile, threads: 2, device: 'cpu' }, { ok: true, perplexity: true, seconds: 2 }, at(s));
  workers.jobDone(gpu2, { ok: false, perplexity: true, seconds: 1 }, at(15));
  workers.seen([hostile], [WORKERS.hostile], at(60));
  store.addMaskDuplicate({ hash: 'dup1', infix: 'add(mul(W,G),mul(W,sqrt(X)))', fingerprint: 'fpA', step: 3 });
  for (const [method, ppl] of [['dense', 120], ['wanda', 141], ['magnitude', 150], [XSS_BASELINE, 160]] as const)
    store.addBaseline({ method, pattern: 'unstructured', sparsity: method === 'dense' ? 0 : 0.5, split: 'brown:search', tokens: FULL_TOKENS, ppl, seconds: 1 });
  store.addProgress({ step: 1, evaluations: 4, individuals: 2, best: 140, median: 145, elapsed: 10 });
  store.addProgress({ step: 2, evaluations: 7, individuals: 4, best: 139, median: 142.5, elapsed: 20 });
  store.addProgress({ step: 3, evaluations: 10, individuals: 8, best: 138, median: 139.5, elapsed: 30 });
  store.setSeconds(30);
  store.setStatus('finished');
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}
