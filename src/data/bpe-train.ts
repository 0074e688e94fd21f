/**
 * A small byte-level BPE trainer in the manner of GPT-2, written out as a standard
 * Hugging Face `tokenizer.json` so any tokenizers library (Rust, Python, JS) loads it.
 *
 * Text is cut into pre-tokens by the GPT-2 regex, each pre-token is taken as UTF-8 bytes,
 * and bytes are shown through GPT-2's byte-to-unicode table (space -> `Ġ`, newline -> `Ċ`).
 * Training repeatedly merges the most frequent adjacent pair of symbols over the
 * pre-token frequency table; pair counts are kept incrementally, so each merge only
 * revisits the words that hold the pair. Ties in frequency go to the pair of smaller
 * ids (left id first), which makes training deterministic.
 *
 * Vocabulary layout: ids 0..255 are the single bytes (id = byte value), then one id per
 * merge in merge order, and the last id is the special token `<|endoftext|>` (as GPT-2's
 * 50256). Nothing inserts `<|endoftext|>` into text by itself; it is there for callers
 * that want a document separator.
 */
import { InputError } from '../errors.ts';
import { writeFileAtomicSync } from '../files.ts';

/** GPT-2's pre-tokenizer pattern (the one Hugging Face's ByteLevel pre-tokenizer uses). */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export const END_OF_TEXT = '<|endoftext|>';

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100.. */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array(256);
  for (const b of printable) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCharCode(256 + n++);
  return table;
})();

/** Pre-tokens of a text, as GPT-2 cuts them (before the byte mapping). */
export function preTokenize(text: string): string[] {
  return text.match(GPT2_PATTERN) ?? [];
}

const encoder = new TextEncoder();

/** A pre-token's bytes shown through the byte-to-unicode table. */
export function byteLevel(piece: string): string {
  let s = '';
  for (const b of encoder.encode(piece)) s += BYTE_TO_UNICODE[b];
  return s;
}

export interface BpeModel {
  /** Token string (byte-level alphabet) of each id; the last one is `<|endoftext|>`. */
  vocab: string[];
  /** Merges in rank order, as pairs of token strings. */
  merges: [string, string][];
}

export interface TrainOptions {
  /** Total vocabulary size including the 256 byte tokens and `<|endoftext|>`. */
  vocabSize: number;
  /** Pairs seen fewer times than this are never merged (default 2). */
  minFrequency?: number;
  onProgress?: (vocabSoFar: number, target: number) => void;
}

/** Max-heap of (count, pair key): highest count first, then smallest key. */
class PairHeap {
  private c: number[] = [];
  private k: number[] = [];
  get size(): number {
    return this.c.length;
  }
  private above(i: number, j: number): boolean {
    return this.c[i] > this.c[j] || (this.c[i] === this.c[j] && this.k[i] < this.k[j]);
  }
  private swap(i: number, j: number): void {
    const c = this.c[i];
    this.c[i] = this.c[j];
    this.c[j] = c;
    const k = this.k[i];
    this.k[i] = this.k[j];
    this.k[j] = k;
  }
  push(count: number, key: number): void {
    this.c.push(count);
    this.k.push(key);
    let i = this.c.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): { count: number; key: number } {
    const top = { count: this.c[0], key: this.k[0] };
    const lastC = this.c.pop()!;
    const lastK = this.k.pop()!;
    if (this.c.length > 0) {
      this.c[0] = lastC;
      this.k[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.c.length && this.above(l, m)) m = l;
        if (r < this.c.length && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

const KEY_BASE = 1 << 20; // pair key = left * 2^20 + right; ids stay below 2^20
const MAX_VOCAB = KEY_BASE;

/** Train byte-level BPE on a text (or several texts, pre-tokenized independently). */
export function trainBpe(text: string | readonly string[], opts: TrainOptions): BpeModel {
  const { vocabSize, minFrequency = 2, onProgress } = opts;
  if (!Number.isInteger(vocabSize) || vocabSize < 257 || vocabSize > MAX_VOCAB) {
    throw new InputError(`vocabulary size ${vocabSize} must be an integer from 257 (256 bytes + ${END_OF_TEXT}) to ${MAX_VOCAB}`);
  }
  // Pre-token frequencies.
  const freqOf = new Map<string, number>();
  for (const t of typeof text === 'string' ? [text] : text) {
    for (const m of t.matchAll(GPT2_PATTERN)) freqOf.set(m[0], (freqOf.get(m[0]) ?? 0) + 1);
  }
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [piece, f] of freqOf) {
    words.push(Array.from(encoder.encode(piece)));
    freq.push(f);
  }

  const vocab: string[] = BYTE_TO_UNICODE.slice();
  const idOf = new Map<string, number>(vocab.map((s, i) => [s, i]));
  const merges: [string, string][] = [];
  const counts = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const heap = new PairHeap();

  for (let w = 0; w < words.length; w++) {
    const s = words[w];
    for (let i = 0; i + 1 < s.length; i++) {
      const key = s[i] * KEY_BASE + s[i + 1];
      counts.set(key, (counts.get(key) ?? 0) + freq[w]);
      let set = where.get(key);
      if (!set) where.set(key, (set = new Set()));
      set.add(w);
    }
  }
  for (const [key, c] of counts) heap.push(c, key);

  const target = vocabSize - 1; // the last id is <|endoftext|>
  while (vocab.length < target && heap.size > 0) {
    const top = heap.pop();
    const cur = counts.get(top.key) ?? 0;
    if (cur !== top.count) continue; // stale entry; the current count has its own entry
    if (cur < minFrequency) break;
    const a = Math.floor(top.key / KEY_BASE);
    const b = top.key % KEY_BASE;
    const merged = vocab[a] + vocab[b];
    let c = idOf.get(merged);
    if (c === undefined) {
      c = vocab.length;
      vocab.push(merged);
      idOf.set(merged, c);
    }
    merges.push([vocab[a], vocab[b]]);

    const touched = new Set<number>();
    for (const w of where.get(top.key) ?? []) {
      const old = words[w];
      let has = false;
      for (let i = 0; i + 1 < old.length; i++) {
        if (old[i] === a && old[i + 1] === b) {
          has = true;
          break;
        }
      }
      if (!has) continue;
      const next: number[] = [];
      for (let i = 0; i < old.length; i++) {
        if (i + 1 < old.length && old[i] === a && old[i + 1] === b) {
          next.push(c);
          i++;
        } else {
          next.push(old[i]);
        }
      }
      const f = freq[w];
      for (let i = 0; i + 1 < old.length; i++) {
        const key = old[i] * KEY_BASE + old[i + 1];
        counts.set(key, counts.get(key)! - f);
        touched.add(key);
      }
      for (let i = 0; i + 1 < next.length; i++) {
        const key = next[i] * KEY_BASE + next[i + 1];
        counts.set(key, (counts.get(key) ?? 0) + f);
        touched.add(key);
        let set = where.get(key);
        if (!set) where.set(key, (set = new Set()));
        set.add(w);
      }
      words[w] = next;
    }
    where.delete(top.key);
    for (const key of touched) {
      const n = counts.get(key)!;
      if (n > 0) heap.push(n, key);
      else counts.delete(key);
    }
    if (onProgress && merges.length % 64 === 0) onProgress(vocab.length + 1, vocabSize);
  }
  vocab.push(END_OF_TEXT);
  onProgress?.(vocab.length, vocabSize);
  return { vocab, merges };
}

/**
 * Reference encoder, independent of any library: per pre-token, repeatedly apply the
 * lowest-ranked merge present (leftmost on ties), one occurrence at a time, as Hugging
 * Face's BPE model does. Does not split out `<|endoftext|>` written inside the text.
 */
export function encodeWithMerges(model: BpeModel, text: string): number[] {
  const rank = new Map<string, number>(model.merges.map(([l, r], i) => [`${l} ${r}`, i]));
  const idOf = new Map<string, number>(model.vocab.map((s, i) => [s, i]));
  const cache = new Map<string, number[]>();
  const out: number[] = [];
  for (const piece of preTokenize(text)) {
    let ids = cache.get(piece);
    if (!ids) {
      const sym = Array.from(byteLevel(piece));
      for (;;) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i + 1 < sym.length; i++) {
          const r = rank.get(`${sym[i]} ${sym[i + 1]}`);
          if (r !== undefined && r < bestRank) {
            bestRank = r;
            best = i;
          }
        }
        if (best < 0) break;
        sym.splice(best, 2, sym[best] + sym[best + 1]);
      }
      ids = sym.map((s) => idOf.get(s)!);
      cache.set(piece, ids);
    }
    for (const id of ids) out.push(id);
  }
  return out;
}

/** The model as a Hugging Face tokenizer.json object (BPE, ByteLevel pre-tokenizer/decoder). */
export function toTokenizerJson(model: BpeModel): object {
  const eot = model.vocab.length - 1;
  const vocab: Record<string, number> = {};
  model.vocab.forEach((s, i) => (vocab[s] = i));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: eot, content: END_OF_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: model.merges.map(([l, r]) => `${l} ${r}`),
    },
  };
}

/** Write the model as tokenizer.json. */
export function saveTokenizerJson(model: BpeModel, path: string): void {
  writeFileAtomicSync(path, JSON.stringify(toTokenizerJson(model)) + '\n');
}
