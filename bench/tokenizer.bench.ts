/**
 * Data-layer timings: parsing Brown, training the 4096-token byte-level BPE on
 * brown:train, and encoding brown:test through @huggingface/tokenizers (what loadTokens
 * uses) beside the trainer's plain-TypeScript reference encoder (same ids) in the same run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brownDocuments } from '../src/data/brown.ts';
import { splitText } from '../src/data/splits.ts';
import { encodeWithMerges, saveTokenizerJson, trainBpe } from '../src/data/bpe-train.ts';
import { loadTokenizer } from '../src/data/tokenizer.ts';

const REPS = 3;

function best(f: () => void): number {
  let t = Infinity;
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    f();
    t = Math.min(t, performance.now() - t0);
  }
  return t / 1000;
}

export async function run(): Promise<void> {
  let t0 = performance.now();
  const docs = brownDocuments();
  const parse = (performance.now() - t0) / 1000;
  const chars = docs.reduce((s, d) => s + d.text.length, 0);
  console.log(`brown: parsed ${docs.length} documents (${chars} chars) in ${parse.toFixed(2)}s`);

  const train = splitText('train');
  t0 = performance.now();
  const model = trainBpe(train, { vocabSize: 4096 });
  const trainSecs = (performance.now() - t0) / 1000;
  console.log(`bpe: trained 4096 tokens (${model.merges.length} merges) on brown:train (${train.length} chars) in ${trainSecs.toFixed(2)}s`);

  const dir = mkdtempSync(join(tmpdir(), 'symprune-bench-tok-'));
  try {
    const path = join(dir, 'tokenizer.json');
    saveTokenizerJson(model, path);
    const tok = loadTokenizer(path);
    const text = splitText('test');
    let n = 0;
    const lib = best(() => (n = tok.encode(text).length));
    const ref = best(() => void encodeWithMerges(model, text));
    const dec = best(() => void tok.decode(tok.encode(text)));
    console.log(
      `encode brown:test (${text.length} chars, ${n} tokens): @huggingface/tokenizers ${(n / lib / 1e3).toFixed(0)}k tokens/s ` +
        `(${lib.toFixed(2)}s), reference encoder ${(n / ref / 1e3).toFixed(0)}k tokens/s (${ref.toFixed(2)}s); ` +
        `library/reference time ratio ${(lib / ref).toFixed(2)}; encode+decode ${dec.toFixed(2)}s`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
