import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../src/errors.ts';
import { splitDocuments, splitText } from '../src/data/splits.ts';
import {
  BYTE_TO_UNICODE,
  END_OF_TEXT,
  encodeWithMerges,
  preTokenize,
  saveTokenizerJson,
  toTokenizerJson,
  trainBpe,
  type BpeModel,
} from '../src/data/bpe-train.ts';
import { loadTokenizer } from '../src/data/tokenizer.ts';
import { loadTokens } from '../src/data/dataset.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-tok-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

// A few dozen training documents keep training well under a second.
const trainSample = splitDocuments('train')
  .slice(0, 40)
  .map((d) => d.text)
  .join('\n\n');
const model = trainBpe(trainSample, { vocabSize: 600 });
const tokPath = join(dir, 'tokenizer.json');
saveTokenizerJson(model, tokPath);

const TRICKY = [
  'Plain words, "quotes" and  double  spaces.\n\n\tTabbed line\n   \n',
  "Unicode: café, naïve, Zürich, 東京, emoji 🙂 and ‘curly’ — dashes; it's we'll I'd.",
  '  leading spaces, trailing spaces   \n\n\n\nmany newlines\r\nCRLF 12345 3.14159 $1,000',
].join('\n');

test('training: vocabulary layout (bytes, merges, <|endoftext|> last) and deterministic', () => {
  assert.equal(model.vocab.length, 600);
  assert.equal(model.vocab[599], END_OF_TEXT);
  for (let b = 0; b < 256; b++) assert.equal(model.vocab[b], BYTE_TO_UNICODE[b]);
  assert.equal(new Set(model.vocab).size, model.vocab.length, 'token strings are unique');
  for (const [l, r] of model.merges) assert.ok(model.vocab.includes(l + r) && model.vocab.includes(l) && model.vocab.includes(r));
  // The most frequent pair of English text with GPT-2 pre-tokens is ' t' or 'he'/' the' parts.
  assert.ok(['Ġ t', 'h e', 'Ġ a'].includes(model.merges[0].join(' ')), model.merges[0].join(' '));
  const again = trainBpe(trainSample, { vocabSize: 600 });
  assert.deepEqual(JSON.stringify(toTokenizerJson(again)), JSON.stringify(toTokenizerJson(model)));
  assert.throws(() => trainBpe('abc', { vocabSize: 100 }), InputError);
});

/** Plain BPE training: recount every pair after each merge (slow, obviously right). */
function naiveTrain(text: string, vocabSize: number): BpeModel {
  const counts = new Map<string, number>();
  for (const p of preTokenize(text)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const words = [...counts].map(([p, f]) => ({ ids: Array.from(new TextEncoder().encode(p)), f }));
  const vocab = BYTE_TO_UNICODE.slice();
  const merges: [string, string][] = [];
  while (vocab.length < vocabSize - 1) {
    const pc = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.ids.length; i++) {
      const k = `${w.ids[i]},${w.ids[i + 1]}`;
      pc.set(k, (pc.get(k) ?? 0) + w.f);
    }
    let best: [number, number] | null = null;
    let bestC = 0;
    for (const [k, c] of pc) {
      const [a, b] = k.split(',').map(Number);
      if (c > bestC || (c === bestC && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestC = c;
      }
    }
    if (!best || bestC < 2) break;
    const [a, b] = best;
    const s = vocab[a] + vocab[b];
    let id = vocab.indexOf(s);
    if (id < 0) id = vocab.push(s) - 1;
    merges.push([vocab[a], vocab[b]]);
    for (const w of words) {
      const next: number[] = [];
      for (let i = 0; i < w.ids.length; i++) {
        if (i + 1 < w.ids.length && w.ids[i] === a && w.ids[i + 1] === b) {
          next.push(id);
          i++;
        } else next.push(w.ids[i]);
      }
      w.ids = next;
    }
  }
  vocab.push(END_OF_TEXT);
  return { vocab, merges };
}

test('training: incremental pair counts give the same merges as recounting from scratch', () => {
  const small = trainSample.slice(0, 30_000) + ' aaaa aaa aaaaaaa';
  const fast = trainBpe(small, { vocabSize: 380 });
  const slow = naiveTrain(small, 380);
  assert.deepEqual(fast.merges, slow.merges);
  assert.deepEqual(fast.vocab, slow.vocab);
});

test('the written tokenizer.json loads through @huggingface/tokenizers', () => {
  const json = JSON.parse(readFileSync(tokPath, 'utf8'));
  assert.equal(json.model.type, 'BPE');
  assert.equal(json.pre_tokenizer.type, 'ByteLevel');
  assert.equal(json.decoder.type, 'ByteLevel');
  assert.equal(Object.keys(json.model.vocab).length, 600);
  assert.equal(json.model.merges.length, model.merges.length);
  const tok = loadTokenizer(tokPath);
  assert.equal(tok.vocabSize, 600);
  assert.equal(tok.idOf(END_OF_TEXT), 599);
  assert.equal(tok.idOf('Ġthe'), model.vocab.indexOf('Ġthe'));
  assert.equal(tok.decode([]), '');
  assert.throws(() => tok.decode([5, 600]), (e: unknown) => e instanceof InputError && /id 600 at position 1/.test(e.message));
});

test('library ids equal the trainer’s own encoding, on Brown text longer than one encoding chunk', () => {
  const tok = loadTokenizer(tokPath);
  // brown:calib is ~290k characters, so the library sees it in several pieces.
  const text = splitText('calib') + '\n' + TRICKY;
  const ids = tok.encode(text);
  assert.deepEqual(ids, encodeWithMerges(model, text));
  // Every line break here is a run of 2+ whitespace characters ending in "\n", so every
  // place the text is cut for the library lies inside such a run.
  const runs = Array.from({ length: 20000 }, (_, i) => `word${i}${' '.repeat(i % 3)}${'\n'.repeat(2 + (i % 3))}Next`).join('');
  assert.ok(runs.length > 4 * 65536);
  // A tokenizer that has merges for whitespace runs, so a wrong cut would change the ids.
  const wsModel = trainBpe(runs, { vocabSize: 320 });
  assert.ok(wsModel.vocab.includes('ĠĊĊ') && wsModel.vocab.includes('ĠĠĊĊĊ'));
  const wsPath = join(dir, 'ws-tokenizer.json');
  saveTokenizerJson(wsModel, wsPath);
  assert.deepEqual(loadTokenizer(wsPath).encode(runs), encodeWithMerges(wsModel, runs));
});

test('round trip: decode(encode(text)) == text on Brown text and odd Unicode', () => {
  const tok = loadTokenizer(tokPath);
  for (const text of [splitText('search'), TRICKY]) {
    const ids = tok.encode(text);
    assert.ok(ids.length < text.length, 'BPE compresses');
    assert.equal(tok.decode(ids), text);
  }
  // Byte-level BPE has no unknown token: every id is in range.
  for (const id of tok.encode(TRICKY)) assert.ok(id >= 0 && id < 599);
});

test('loadTokenizer: one-line InputErrors naming the file', () => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{ not json');
  const noModel = join(dir, 'nomodel.json');
  writeFileSync(noModel, JSON.stringify({ version: '1.0' }));
  const weird = join(dir, 'weird.json');
  writeFileSync(weird, JSON.stringify({ model: { type: 'Martian' } }));
  const cases: [string, RegExp][] = [
    [join(dir, 'missing.json'), /not found/],
    [dir, /is a folder/],
    [bad, /not valid JSON/],
    [noModel, /no "model" entry/],
    [weird, /cannot build a tokenizer/],
  ];
  for (const [p, re] of cases) {
    assert.throws(() => loadTokenizer(p), (e: unknown) => e instanceof InputError && re.test(e.message) && e.message.includes(p) && !e.message.includes('\n'), p);
  }
});

test('loadTokens: brown splits and .txt need a tokenizer; ids checked against the vocabulary', async () => {
  await assert.rejects(loadTokens('brown:calib', {}), (e: unknown) => e instanceof InputError && /needs a tokenizer/.test(e.message));
  await assert.rejects(loadTokens('brown:dev', { tokenizerPath: tokPath }), /unknown Brown split/);
  await assert.rejects(loadTokens('data.csv', { tokenizerPath: tokPath }), /unknown data 'data\.csv'/);
  const ids = await loadTokens('brown:calib', { tokenizerPath: tokPath, vocabSize: 600 });
  assert.deepEqual(Array.from(ids), loadTokenizer(tokPath).encode(splitText('calib')));
  // A vocabulary smaller than the tokenizer's: the first id past it is named with its position.
  const first = ids.findIndex((id) => id >= 300);
  await assert.rejects(
    loadTokens('brown:calib', { tokenizerPath: tokPath, vocabSize: 300 }),
    (e: unknown) => e instanceof InputError && e.message.includes(`token id ${ids[first]} at position ${first} `),
  );
  ids[0] = -7; // callers get their own copy of the cached split
  assert.notEqual((await loadTokens('brown:calib', { tokenizerPath: tokPath }))[0], -7);
  const txt = join(dir, 'sample.txt');
  writeFileSync(txt, TRICKY);
  assert.equal(loadTokenizer(tokPath).decode(Array.from(await loadTokens(txt, { tokenizerPath: tokPath }))), TRICKY);
  await assert.rejects(loadTokens(txt, {}), /needs a tokenizer/);
  await assert.rejects(loadTokens(join(dir, 'absent.txt'), { tokenizerPath: tokPath }), /data file not found/);
});

test('symprune tokenizer train writes a loadable tokenizer.json and reports it', async () => {
  const { spawnSync } = await import('node:child_process');
  const bin = new URL('../bin/symprune.mjs', import.meta.url).pathname;
  const txt = join(dir, 'corpus.txt');
  writeFileSync(txt, trainSample);
  const out = join(dir, 'cli-tokenizer.json');
  const r = spawnSync(process.execPath, [bin, 'tokenizer', 'train', '--vocab', '600', '--data', txt, '--out', out, '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.equal(info.vocabSize, 600);
  assert.equal(info.endOfTextId, 599);
  // Same text, same vocabulary size: the same tokenizer as trained in-process.
  assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), JSON.parse(readFileSync(tokPath, 'utf8')));
  assert.equal(info.tokens, loadTokenizer(out).encode(trainSample).length);
  const bad = spawnSync(process.execPath, [bin, 'tokenizer', 'train', '--vocab', '600', '--data', join(dir, 'none.txt'), '--out', out], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^symprune: --data .*none\.txt: file not found\n$/);
});
