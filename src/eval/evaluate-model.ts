/** The perplexity report of `prune --eval` and `baselines`: one model, in memory or on disk, on one data spec. */
import type { ModelProto } from '../onnx/proto.ts';
import { loadTokens } from '../data/dataset.ts';
import { modelVocabSize } from '../prune/calibration-windows.ts';
import { fileOrModelPerplexity } from './perplexity-stream.ts';

/** Perplexity on brown:test (or another spec; tokens may be preloaded) of a model in memory or a model file, block by block when it exceeds maxMemory. */
export async function evaluateModel(
  model: ModelProto | string,
  opts: { data?: string; tokens?: Int32Array; tokenizerPath?: string; seqlen: number; maxTokens?: number; threads?: number; maxMemory?: number },
): Promise<{ data: string; ppl: number; nll: number; tokens: number; seqlen: number; seconds: number }> {
  const data = opts.data ?? 'brown:test';
  const vocabSize = typeof model === 'string' ? undefined : modelVocabSize(model);
  const tokens = opts.tokens ?? (await loadTokens(data, { tokenizerPath: opts.tokenizerPath, vocabSize }));
  const r = await fileOrModelPerplexity(model, tokens, { seqlen: opts.seqlen, maxTokens: opts.maxTokens, threads: opts.threads, maxMemory: opts.maxMemory ?? Infinity });
  return { data, ppl: r.ppl, nll: r.nll, tokens: r.tokens, seqlen: r.seqlen, seconds: r.seconds };
}
