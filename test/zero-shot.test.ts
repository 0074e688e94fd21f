import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataType } from '../src/onnx/proto.ts';
import { makeModel, node, valueInfo } from '../src/onnx/graph-build.ts';
import { floatTensor } from '../src/onnx/tensor.ts';
import type { Tokenizer } from '../src/data/tokenizer.ts';
import { InputError } from '../src/errors.ts';
import { LoglikScorer, encodePair, loadTask, meanStderr, scoreTasks, type Task } from '../src/eval/zero-shot.ts';

// A toy tokenizer: a=0 b=1 ' '=2 c=3, and "ab"=4 by greedy longest match (so merges can cross a boundary).
const VOCAB = ['a', 'b', ' ', 'c', 'ab'];
const tok: Tokenizer = {
  vocabSize: 5,
  encode(text) {
    const ids: number[] = [];
    for (let i = 0; i < text.length; ) {
      if (text.startsWith('ab', i)) ((ids.push(4), (i += 2)));
      else {
        const k = VOCAB.indexOf(text[i]!);
        if (k < 0) throw new Error(`toy tokenizer: ${text[i]}`);
        ids.push(k);
        i++;
      }
    }
    return ids;
  },
  decode: (ids) => ids.map((i) => VOCAB[i]).join(''),
  idOf: (t) => (VOCAB.includes(t) ? VOCAB.indexOf(t) : undefined),
};

// A bigram model whose logits at a position are log P(next | current token): log-softmax
// returns them unchanged, so every log-likelihood below is a sum of logs of these numbers.
const P = [
  [0.1, 0.2, 0.4, 0.2, 0.1], // after a
  [0.1, 0.1, 0.6, 0.1, 0.1], // after b
  [0.5, 0.1, 0.05, 0.25, 0.1], // after ' '
  [0.2, 0.2, 0.2, 0.2, 0.2], // after c
  [0.1, 0.1, 0.5, 0.2, 0.1], // after ab
];
const bigram = makeModel({
  name: 'bigram',
  node: [node('Gather', ['E', 'input_ids'], ['logits'], 'gather', { axis: 0 })],
  initializer: [floatTensor('E', [5, 5], Float32Array.from(P.flat().map(Math.log)))],
  input: [valueInfo('input_ids', DataType.INT64, ['batch', 'seq'])],
  output: [valueInfo('logits', DataType.FLOAT, ['batch', 'seq', 5])],
});

const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test('encodePair: trailing whitespace moves to the choice; choice tokens = tok(context+choice) after tok(context)', () => {
  assert.deepEqual(encodePair(tok, 'ab a ', 'b'), { context: [4, 2, 0], choice: [2, 1] });
  // "a" + "b c" tokenizes as [ab, ' ', c]: the merged token stays with the context's length.
  assert.deepEqual(encodePair(tok, 'a', 'b c'), { context: [0], choice: [2, 3] });
});

test('log-likelihoods and greediness of the bigram model, by hand', async () => {
  const s = await LoglikScorer.create(bigram, { threads: 1 });
  const r = await s.score([encodePair(tok, 'ab', ' a'), encodePair(tok, 'c', ' abab'), encodePair(tok, 'b', ' a'), encodePair(tok, 'a', ' c')]);
  close(r[0]!.ll, Math.log(0.5 * 0.5)); // ab->' ', ' '->a
  close(r[1]!.ll, Math.log(0.2 * 0.1 * 0.1)); // c->' ', ' '->ab, ab->ab
  close(r[2]!.ll, Math.log(0.6 * 0.5));
  close(r[3]!.ll, Math.log(0.4 * 0.25));
  assert.deepEqual(r.map((x) => x.greedy), [true, false, true, false]);
  // Left truncation to maxLength + 1 tokens keeps the choice (a bigram model does not see the cut).
  const short = await LoglikScorer.create(bigram, { threads: 1, maxLength: 2 });
  close((await short.score([encodePair(tok, 'ab ab', ' a')]))[0]!.ll, Math.log(0.5 * 0.5));
  await s.release();
  await short.release();
});

test('acc, acc_norm (per byte) and stderr of a multiple-choice task; greedy accuracy and perplexity of a single-choice task', async () => {
  const mc: Task = {
    name: 'mc',
    items: [
      // lls: log .25, log .125, log .05 -> acc picks 0; per byte -0.69, -1.04, -1.00 -> 0; gold 2: both wrong.
      { context: 'ab', choices: [' a', ' c', ' ab'], gold: 2 },
      // lls: log .05 (2 bytes: -1.50), log .002 (5 bytes: -1.24): acc picks 0, acc_norm picks 1 = gold.
      { context: 'c', choices: [' c', ' abab'], gold: 1 },
      // lls: log .3, log .15: both right.
      { context: 'b ', choices: ['a', 'c'], gold: 0 },
    ],
  };
  const lambada: Task = { name: 'last', items: [{ context: 'b', choices: [' a'], gold: 0 }, { context: 'a', choices: [' c'], gold: 0 }] };
  const r = await scoreTasks(bigram, tok, [mc, lambada], { threads: 1 });
  close(r.mc!.acc, 1 / 3, 1e-12);
  close(r.mc!.acc_norm, 2 / 3, 1e-12);
  // sample variance of [0,0,1] is 1/3, over n = 3: stderr 1/3 (same for [0,1,1]).
  close(r.mc!.acc_stderr, 1 / 3, 1e-12);
  close(r.mc!.acc_norm_stderr, 1 / 3, 1e-12);
  assert.equal(r.mc!.n, 3);
  assert.equal(r.mc!.ppl, undefined);
  close(r.last!.acc, 0.5, 1e-12);
  close(r.last!.acc_stderr, 0.5, 1e-12);
  close(r.last!.ppl!, 1 / Math.sqrt(0.3 * 0.1), 1e-5);
  close(meanStderr([1, 1, 0, 0]), Math.sqrt(1 / 3 / 4), 1e-12);
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-zs-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('task files: name from the file, bad lines refused with their line number', () => {
  const f = path.join(tmp, 'good.jsonl');
  fs.writeFileSync(f, '{"context":"a","choices":[" b"," c"],"gold":1}\n\n{"context":"b","choices":["x"],"gold":0}\n');
  const t = loadTask(f);
  assert.equal(t.name, 'good');
  assert.equal(t.items.length, 2);
  const bad = (body: string, re: RegExp) => {
    const g = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(g, body);
    assert.throws(() => loadTask(g), (e: unknown) => e instanceof InputError && re.test(e.message));
  };
  bad('{"context":"a","choices":[" b"],"gold":1}\n', /line 1: "gold"/);
  bad('{"context":"a","choices":[" b"],"gold":0}\nnot json\n', /line 2 is not JSON/);
  bad('{"context":"","choices":["b"],"gold":0}\n', /"context"/);
  bad('{"context":"a","choices":[],"gold":0}\n', /"choices"/);
  bad('\n', /no items/);
  assert.throws(() => loadTask(path.join(tmp, 'missing.jsonl')), InputError);
});

test('the shipped Brown tasks are what the script builds from brown:test, and valid', async () => {
  const { splitDocuments } = await import('../src/data/splits.ts');
  const { lastWordItems, continuationItems, sentencesOf } = await import('../src/data/zero-shot-tasks.ts');
  const docs = splitDocuments('test');
  const shipped = (n: string) => loadTask(path.join(import.meta.dirname, '..', 'data', 'tasks', `${n}.jsonl`)).items;
  assert.deepEqual(shipped('brown-last-word'), lastWordItems(docs));
  assert.deepEqual(shipped('brown-continuation'), continuationItems(docs));
  for (const it of shipped('brown-last-word')) assert.ok(it.choices.length === 1 && /^ [A-Za-z]+$/.test(it.choices[0]!));
  for (const it of shipped('brown-continuation')) assert.ok(it.choices.length === 4 && new Set(it.choices).size === 4);
  // Titles do not end sentences.
  assert.deepEqual(sentencesOf('Mr. Smith came. He left Mrs. Jones at St. Louis. Fig. 3 shows it.'), ['Mr. Smith came.', 'He left Mrs. Jones at St. Louis.', 'Fig. 3 shows it.']);
});

test('items longer than the model\'s position table are cut on the left, as lm-eval does, instead of failing in its Gather', async () => {
  // The bigram model plus a 4-row position table of zeros: same scores, but positions >= 4 are out of range.
  const positioned = makeModel({
    name: 'bigram-4-positions',
    node: [
      node('Gather', ['E', 'input_ids'], ['bigram'], 'gather', { axis: 0 }),
      node('Gather', ['PE', 'position_ids'], ['pos'], 'gather_pos', { axis: 0 }),
      node('Add', ['bigram', 'pos'], ['logits'], 'add'),
    ],
    initializer: [floatTensor('E', [5, 5], Float32Array.from(P.flat().map(Math.log))), floatTensor('PE', [4, 5], new Float32Array(20))],
    input: [valueInfo('input_ids', DataType.INT64, ['batch', 'seq']), valueInfo('position_ids', DataType.INT64, ['batch', 'seq'])],
    output: [valueInfo('logits', DataType.FLOAT, ['batch', 'seq', 5])],
  });
  const pair = { context: [0, 1, 2, 3, 0, 1, 2, 0, 2], choice: [3, 1] };
  const cut = await LoglikScorer.create(positioned, { threads: 1 });
  const whole = await LoglikScorer.create(bigram, { threads: 1 });
  try {
    assert.equal(cut.maxLength, 4);
    const [a] = await cut.score([pair]);
    const [b] = await whole.score([pair]);
    close(a!.ll, Math.log(0.25 * 0.2)); // P(c | " ") · P(b | c)
    close(a!.ll, b!.ll);
  } finally {
    await cut.release();
    await whole.release();
  }
});
