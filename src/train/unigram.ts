/**
 * The unigram baseline the bundled model is judged against: token frequencies of the
 * training split with add-one (Laplace) smoothing over the whole vocabulary,
 * p(v) = (count(v) + 1) / (N + V). Its perplexity is taken over exactly the tokens the
 * LM's perplexity counts: non-overlapping windows of seqlen, positions 1..seqlen-1.
 */
export interface UnigramModel {
  vocabSize: number;
  /** natural-log probabilities, one per id */
  logProbs: Float64Array;
  /** training tokens counted */
  count: number;
}

export function fitUnigram(tokens: Int32Array, vocabSize: number): UnigramModel {
  const counts = new Float64Array(vocabSize);
  for (const t of tokens) {
    if (t < 0 || t >= vocabSize) throw new Error(`unigram: token id ${t} outside vocabulary of ${vocabSize}`);
    counts[t]! += 1;
  }
  const denom = tokens.length + vocabSize;
  const logProbs = counts.map((c) => Math.log((c + 1) / denom));
  return { vocabSize, logProbs, count: tokens.length };
}

/** Perplexity over the predicted positions of non-overlapping seqlen windows (trailing partial window dropped). */
export function unigramPerplexity(model: UnigramModel, tokens: Int32Array, seqlen: number, maxTokens?: number): { ppl: number; nll: number; tokens: number } {
  const n = Math.min(tokens.length, maxTokens ?? Infinity);
  const windows = Math.floor(n / seqlen);
  let nll = 0;
  let count = 0;
  for (let w = 0; w < windows; w++) {
    for (let t = 1; t < seqlen; t++) {
      nll -= model.logProbs[tokens[w * seqlen + t]!]!;
      count++;
    }
  }
  const mean = count ? nll / count : NaN;
  return { ppl: Math.exp(mean), nll: mean, tokens: count };
}
