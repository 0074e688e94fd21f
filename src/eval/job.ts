/**
 * A job: what every candidate task of a search is evaluated against, named by content so
 * that a worker on another machine can find and check it: the model and the statistics by
 * sha256, the fitness tokens by their spec and the sha256 of the ids, and the mask settings.
 * Paths are where the coordinator has the files; a worker looks there and under its model
 * roots, and takes only files whose hash matches.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadTokens } from '../data/dataset.ts';
import { loadModelGraph, modelSha256, resolveModel, type ModelDescription } from '../model/load.ts';
import { openModelSource } from '../model/source.ts';
import { encodeModel, type ModelProto } from '../onnx/proto.ts';
import { readLayerWeight, type PrunableLayer } from '../prune/discover.ts';
import { prunableLayers } from '../prune/prune-model.ts';
import { modelVocabSize } from '../prune/calibration-windows.ts';
import { parsePattern } from '../prune/score.ts';
import { LayerStatsFile } from '../prune/stats-file.ts';
import { shared } from './pool.ts';
import type { WorkerInit } from './worker.ts';

export interface JobSpec {
  model: { sha256: string; path: string };
  statistics: { sha256: string; path: string };
  fitness: { data: string; tokensSha256: string };
  seqlen: number;
  sparsity: number;
  pattern: string;
  /** Sparsity of each layer under the run's allocation (OWL); absent: uniform. */
  layerSparsity?: number[];
  /** A search over several settings: each one (tasks name one by index); absent: the one above. */
  settings?: SettingSpec[];
}

/** One setting of a job, as JSON. */
export interface SettingSpec {
  sparsity: number;
  pattern: string;
  layerSparsity?: number[];
}

/** The worker cannot satisfy a job (a file it cannot find, or data that hash differently): retrying elsewhere is the fix, not retrying here. */
export class JobSpecError extends Error {}

/** sha256 of a file, streamed (models can be large). */
export async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export function tokensSha256(t: Int32Array): string {
  return createHash('sha256').update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength)).digest('hex');
}

/** A short key for a spec (jobs of one spec share a loaded model). */
export function specKey(spec: JobSpec): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16);
}

/** Hashes seen, by path, size and modification time of the files (a model is hashed once per worker). */
const hashes = new Map<string, string>();

async function cachedHash(files: string[], hash: () => Promise<string>): Promise<string> {
  const k = files.map((f) => {
    const st = statSync(f);
    return `${f}\0${st.size}\0${st.mtimeMs}`;
  }).join('\0');
  let h = hashes.get(k);
  if (h === undefined) hashes.set(k, (h = await hash()));
  return h;
}

/** Files or folders named like the coordinator's under a root, at most three folders deep. */
function underRoot(root: string, name: string, depth = 3): string[] {
  const out: string[] = [];
  let entries;
  try {
    entries = readdirSync(root, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(root, e.name);
    if (e.name === name) out.push(p);
    if (e.isDirectory() && depth > 0 && !e.name.startsWith('.') && e.name !== 'node_modules') out.push(...underRoot(p, name, depth - 1));
  }
  return out;
}

/**
 * The first candidate with the wanted hash: the coordinator's path (unless roots are given:
 * then this machine keeps its files there), else one of the same name under a root.
 * `hashOf` gives null for a candidate that is not what is wanted at all.
 */
async function findByHash<T>(what: string, want: { sha256: string; path: string }, roots: readonly string[], hashOf: (p: string) => Promise<{ hash: string; value: T } | null>): Promise<T> {
  const seen: string[] = [];
  const candidates = roots.length ? roots.flatMap((r) => underRoot(r, basename(want.path))) : [want.path];
  for (const p of candidates) {
    if (seen.includes(p) || !existsSync(p)) continue;
    seen.push(p);
    const got = await hashOf(p).catch(() => null);
    if (got?.hash === want.sha256) return got.value;
  }
  const where = roots.length ? `under ${roots.join(', ')}` : `at ${want.path} (give --model-root where this machine keeps it)`;
  const looked = seen.length ? `; ${seen.join(', ')} ${seen.length > 1 ? 'hash' : 'hashes'} differently` : '';
  throw new JobSpecError(`${what} with sha256 ${want.sha256.slice(0, 12)}… not found: no ${basename(want.path)} with that hash ${where}${looked}`);
}

/** The model with the spec's hash (an ONNX file or a Hugging Face folder). */
export function findModel(want: JobSpec['model'], roots: readonly string[]): Promise<ModelDescription> {
  return findByHash('model', want, roots, async (p) => {
    const d = resolveModel(p);
    const files = d.kind === 'onnx' ? [d.modelPath] : d.files;
    return { hash: await cachedHash(files, () => modelSha256(d)), value: d };
  });
}

/** A statistics file with the spec's hash. */
export function findStatistics(want: JobSpec['statistics'], roots: readonly string[]): Promise<string> {
  return findByHash('statistics', want, roots, async (p) => (statSync(p).isFile() ? { hash: await cachedHash([p], () => fileSha256(p)), value: p } : null));
}

/** G and X of every layer from a statistics file checked against the model's layers. */
export function readStats(file: string, layers: PrunableLayer[], need: { G: boolean; X: boolean }): { G: Map<string, Float32Array>; X: Map<string, Float32Array> } {
  const f = LayerStatsFile.open(file, layers, need);
  const G = new Map<string, Float32Array>();
  const X = new Map<string, Float32Array>();
  try {
    for (const l of layers) {
      const st = f.get(l.name);
      if (st.G) G.set(l.name, st.G);
      if (st.X) X.set(l.name, st.X);
    }
  } finally {
    f.close();
  }
  return { G, X };
}

/** The largest model buffer a worker thread can be handed (Node's Buffer limit). */
export const MAX_MODEL_BUFFER = 2 ** 32 - 1;

/** float32 bytes of a model's weights, whatever the stored type (bfloat16 and float16 are widened in the workers); its weights are not read. */
export async function float32WeightBytes(d: ModelDescription): Promise<number> {
  const source = await openModelSource(d);
  try {
    return 4 * (source.model.graph?.initializer ?? []).reduce((a, t) => a + (t.dims ?? []).reduce((p: number, x) => p * Number(x), 1), 0);
  } finally {
    await source.close();
  }
}

/**
 * Everything a worker needs for a job, found and checked: the model and statistics by
 * sha256, the fitness tokens by the hash of their ids. JobSpecError when it cannot, or when
 * the model is too large to hand to the worker's thread (the search then runs block by block
 * in its own process, without the queue).
 */
export async function loadJob(spec: JobSpec, roots: readonly string[], opts: { threads?: number } = {}): Promise<WorkerInit> {
  const desc = await findModel(spec.model, roots);
  const weights = await float32WeightBytes(desc);
  if (weights > MAX_MODEL_BUFFER)
    throw new JobSpecError(`model ${desc.modelPath} has ${(weights / 2 ** 30).toFixed(1)} GiB of float32 weights, over the 4 GiB a worker thread is handed in one buffer; search it without --queue (block by block)`);
  const statsPath = await findStatistics(spec.statistics, roots);
  const model = await loadModelGraph(desc);
  const layers = prunableLayers(model);
  const { G, X } = readStats(statsPath, layers, { G: true, X: true });
  const tokens = await loadTokens(spec.fitness.data, { tokenizerPath: desc.tokenizerPath, vocabSize: modelVocabSize(model) }).catch((e: Error) => {
    throw new JobSpecError(`fitness data ${spec.fitness.data}: ${e.message}`);
  });
  const got = tokensSha256(tokens);
  if (got !== spec.fitness.tokensSha256) throw new JobSpecError(`fitness data ${spec.fitness.data} gives other tokens here (sha256 ${got.slice(0, 12)}…, the job's ${spec.fitness.tokensSha256.slice(0, 12)}…)`);
  return workerInit(model, layers, { G, X }, tokens, spec, opts.threads);
}

/** The data of the local pool's threads, in shared memory (each thread decodes its own model). */
export function workerInit(
  model: ModelProto,
  layers: PrunableLayer[],
  stats: { G: Map<string, Float32Array>; X: Map<string, Float32Array> },
  tokens: Int32Array,
  s: { seqlen: number; sparsity: number; pattern: string; layerSparsity?: number[]; settings?: SettingSpec[] },
  threads?: number,
): WorkerInit {
  const bytes = encodeModel(model);
  const sharedModel = new Uint8Array(new SharedArrayBuffer(bytes.length));
  sharedModel.set(bytes);
  return {
    model: sharedModel,
    layers: layers.map((l) => ({
      name: l.name,
      initializer: l.initializer,
      out: l.out,
      in: l.in,
      storedTransposed: l.storedTransposed,
      weight: shared(readLayerWeight(model, l)),
      G: shared(stats.G.get(l.name)!),
      X: shared(stats.X.get(l.name)!),
    })),
    tokens: shared(tokens),
    seqlen: s.seqlen,
    sparsity: s.sparsity,
    pattern: parsePattern(s.pattern, s.sparsity),
    ...(s.layerSparsity ? { layerSparsity: s.layerSparsity } : {}),
    ...(s.settings ? { settings: s.settings.map((x) => ({ sparsity: x.sparsity, pattern: parsePattern(x.pattern, x.sparsity), ...(x.layerSparsity ? { layerSparsity: x.layerSparsity } : {}) })) } : {}),
    threads,
  };
}
