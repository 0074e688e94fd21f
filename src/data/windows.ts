/**
 * Cutting a token stream into model inputs of `seqlen` tokens.
 * Windows are views (subarray) into the token array: copy one before writing into it.
 */
import seedrandom from 'seedrandom';
import { InputError } from '../errors.ts';

function checkPositiveInt(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 1) throw new InputError(`${what} must be a positive integer, got ${value}`);
}

/**
 * `n` calibration windows at seeded random offsets, as Wanda's get_loaders draws them
 * from a tokenized corpus: start = randint(0, L - seqlen - 1), window = ids[start :
 * start + seqlen]. Windows may overlap. The same (tokens, n, seqlen, seed) always gives
 * the same windows (seedrandom's ARC4 generator seeded with String(seed)).
 */
export function sampleWindows(tokens: Int32Array, n: number, seqlen: number, seed: number): Int32Array[] {
  checkPositiveInt(n, 'number of calibration windows');
  checkPositiveInt(seqlen, 'seqlen');
  if (tokens.length < seqlen + 1) {
    throw new InputError(`calibration data holds ${tokens.length} tokens; sampling windows of seqlen ${seqlen} needs at least ${seqlen + 1}`);
  }
  const rng = seedrandom(String(seed));
  const starts = tokens.length - seqlen; // number of allowed starts: 0 .. L - seqlen - 1
  const out: Int32Array[] = [];
  for (let i = 0; i < n; i++) {
    const s = Math.floor(rng() * starts);
    out.push(tokens.subarray(s, s + seqlen));
  }
  return out;
}

/**
 * Non-overlapping windows from the start of the tokens, for perplexity: the first
 * min(L, maxTokens) tokens cut into floor(that / seqlen) windows; the incomplete tail is
 * dropped (the convention of Wanda's and Pruner-Zero's eval_ppl).
 */
export function contiguousWindows(tokens: Int32Array, seqlen: number, maxTokens?: number): Int32Array[] {
  checkPositiveInt(seqlen, 'seqlen');
  if (maxTokens !== undefined) checkPositiveInt(maxTokens, 'max tokens');
  const usable = Math.min(tokens.length, maxTokens ?? Infinity);
  const count = Math.floor(usable / seqlen);
  if (count < 1) {
    const limit = maxTokens !== undefined && maxTokens < tokens.length ? ` (limited to ${maxTokens} by max tokens)` : '';
    throw new InputError(`data holds ${usable} tokens${limit}, fewer than one window of seqlen ${seqlen}`);
  }
  const out: Int32Array[] = [];
  for (let w = 0; w < count; w++) out.push(tokens.subarray(w * seqlen, (w + 1) * seqlen));
  return out;
}
