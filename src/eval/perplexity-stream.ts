/**
 * Perplexity of a model too large for one session: the evaluation windows go
 * through the prelude, then one decoder block at a time, then the tail with the
 * NLL appended (the same LogSoftmax + GatherElements as the whole-model evaluator),
 * so the figures are those of PerplexityEvaluator (same windows, same convention;
 * see perplexity.ts). Memory: one block's weights plus the windows' hidden states.
 *
 * Which path a model takes: whole-model session when its weights fit the memory
 * budget (`--max-memory`), streamed otherwise.
 */
import os from 'node:os';
import { InputError } from '../errors.ts';
import { DataType, type ModelProto, type TensorProto } from '../onnx/proto.ts';
import type { SegmentSpec } from '../onnx/block-split.ts';
import { findValueInfo, valueInfoDims } from '../onnx/graph-edit.ts';
import { valueInfo } from '../onnx/graph-build.ts';
import { SegmentStream, type StreamOptions } from '../onnx/segment-stream.ts';
import { memorySource, OnnxFileSource, wholeModelBytes, type WeightSource } from '../onnx/weight-source.ts';
import path from 'node:path';
import { tensorDims } from '../onnx/tensor.ts';
import { appendNll, NLL, PerplexityEvaluator, sumNll, type PerplexityResult } from './perplexity.ts';
import type { Device } from '../onnx/session.ts';

/** Default memory budget: half of the machine's RAM. */
export const DEFAULT_MEMORY_SHARE = 0.5;

export function defaultMaxMemory(): number {
  return Math.floor(os.totalmem() * DEFAULT_MEMORY_SHARE);
}

/**
 * Parse --max-memory: bytes, or with a unit (`12G`, `800M`, `1.5GB`, `0.6` = that
 * share of RAM when < 1). InputError on anything else.
 */
export function parseMaxMemory(arg: string | number | undefined): number {
  if (arg === undefined) return defaultMaxMemory();
  const s = String(arg).trim();
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?$/.exec(s);
  if (!m) throw new InputError(`--max-memory ${s}: expected bytes or a size like 12G or 800M (or a share of RAM below 1, like 0.5)`);
  const v = Number(m[1]);
  const unit = m[2]!.toUpperCase();
  if (!unit && v > 0 && v < 1) return Math.floor(os.totalmem() * v);
  const mult = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[unit]!;
  const bytes = Math.floor(v * mult);
  if (!(bytes > 0)) throw new InputError(`--max-memory ${s}: must be positive`);
  return bytes;
}

/** Vocabulary rows of the embedding (or the declared logits width); 0 when unknown. */
export function sourceVocabSize(source: WeightSource): number {
  const logits = findValueInfo(source.model, 'logits');
  const dims = logits ? valueInfoDims(logits) : null;
  const last = dims?.[dims.length - 1];
  let vocab = typeof last === 'number' ? last : Infinity;
  const g = source.model.graph!;
  const gather = (g.node ?? []).find((n) => n.opType === 'Gather' && n.input?.[1] === 'input_ids');
  const table = gather ? (g.initializer ?? []).find((t) => t.name === gather.input![0]) : undefined;
  if (table) vocab = Math.min(vocab, tensorDims(table)[0]!);
  return Number.isFinite(vocab) ? vocab : 0;
}

export interface StreamedEvalOptions extends StreamOptions {
  seqlen: number;
  maxTokens?: number;
  /** Called after each segment (prelude, blocks, tail). */
  onProgress?: (segmentsDone: number, segmentsTotal: number) => void;
  /** A segment's initializers with their bytes, when not the source's own (e.g. a block's pruned weights). */
  tensorsFor?: (spec: SegmentSpec) => Promise<TensorProto[] | undefined>;
  /** Called after every batch of every segment; may throw to stop (a task past its time limit). */
  onBatch?: () => void;
}

/** Perplexity over non-overlapping windows, block by block. */
export async function streamedPerplexity(source: WeightSource, tokens: Int32Array, opts: StreamedEvalOptions): Promise<PerplexityResult & { vocabSize: number }> {
  const t0 = performance.now();
  const seqlen = opts.seqlen;
  if (!Number.isInteger(seqlen) || seqlen < 2) throw new InputError(`seqlen must be an integer >= 2 (got ${seqlen})`);
  const outputs = (source.model.graph?.output ?? []).map((o) => o.name);
  if (!outputs.includes('logits')) throw new InputError(`model has no 'logits' output (outputs: ${outputs.join(', ') || 'none'})`);
  const n = Math.min(tokens.length, opts.maxTokens ?? Infinity);
  const count = Math.floor(n / seqlen);
  if (count === 0) throw new InputError(`seqlen ${seqlen} exceeds the data (${n} tokens${n < tokens.length ? ' after max-tokens' : ''})`);
  const vocab = sourceVocabSize(source);
  const windows: Int32Array[] = [];
  for (let w = 0; w < count; w++) windows.push(tokens.subarray(w * seqlen, (w + 1) * seqlen));
  for (let i = 0; i < count * seqlen; i++) {
    const id = tokens[i]!;
    if (id < 0 || (vocab > 0 && id >= vocab)) throw new InputError(`token id ${id} at position ${i} is outside the model's vocabulary (0..${vocab - 1})`);
  }
  const stream = new SegmentStream(source, windows, { ...opts, batchSize: opts.batchSize ?? 4 });
  const total = stream.plan.segments.length;
  let done = 0;
  const onBatch = opts.onBatch ? () => opts.onBatch!() : undefined;
  for (const spec of stream.plan.segments.slice(0, -1)) {
    await stream.run(spec, { tensors: await opts.tensorsFor?.(spec), onBatch });
    opts.onProgress?.(++done, total);
  }
  const logitsType = findValueInfo(source.model, 'logits')?.type?.tensorType?.elemType ?? DataType.FLOAT;
  let sum = 0;
  await stream.run(stream.tail, {
    tensors: await opts.tensorsFor?.(stream.tail),
    tokenInputs: ['input_ids'],
    advance: false,
    transform: (m) => {
      appendNll(m, logitsType);
      m.graph!.output = [valueInfo(NLL, DataType.FLOAT, ['batch', 'seq', 1])];
      return m;
    },
    onBatch: (_, out, b) => {
      sum += sumNll(out[NLL]!.data as Float32Array, b, seqlen);
      opts.onBatch?.();
    },
  });
  opts.onProgress?.(++done, total);
  const predicted = count * (seqlen - 1);
  const nll = sum / predicted;
  return { ppl: Math.exp(nll), nll, tokens: predicted, windows: count, seqlen, seconds: (performance.now() - t0) / 1000, vocabSize: vocab };
}

export interface ModelPerplexityOptions extends StreamedEvalOptions {
  /** Memory budget in bytes: a model whose whole-model session needs more is streamed. */
  maxMemory: number;
  /** Resolve the source's weights into its model (for a whole-model session). */
  loadAll: () => Promise<ModelProto>;
  device?: Device;
}

/**
 * Perplexity of a model: one whole-model session when it fits `maxMemory`, block
 * by block otherwise (the same figures either way).
 */
export async function modelPerplexity(source: WeightSource, tokens: Int32Array, opts: ModelPerplexityOptions): Promise<PerplexityResult & { streamed: boolean }> {
  if (wholeModelBytes(source) > opts.maxMemory) return { ...(await streamedPerplexity(source, tokens, opts)), streamed: true };
  const ev = await PerplexityEvaluator.create(await opts.loadAll(), { threads: opts.threads, device: opts.device });
  try {
    const r = await ev.evaluate(tokens, { seqlen: opts.seqlen, maxTokens: opts.maxTokens, batchSize: opts.batchSize, onProgress: (d, n) => opts.onProgress?.(d, n) });
    return { ...r, streamed: false };
  } finally {
    await ev.release();
  }
}

/**
 * Perplexity of a model file (or of a model already in memory), block by block when
 * it does not fit `maxMemory`.
 */
export async function fileOrModelPerplexity(
  where: string | ModelProto,
  tokens: Int32Array,
  opts: { seqlen: number; maxTokens?: number; threads?: number; maxMemory: number },
): Promise<PerplexityResult & { streamed: boolean }> {
  if (typeof where !== 'string') return modelPerplexity(memorySource(where), tokens, { ...opts, loadAll: async () => where });
  const source = await OnnxFileSource.open(path.resolve(where));
  try {
    return await modelPerplexity(source, tokens, { ...opts, loadAll: () => source.loadAll() });
  } finally {
    await source.close();
  }
}
