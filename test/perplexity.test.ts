import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';
import { buildLlama, llamaInitializerNames } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { makeModel, node, valueInfo } from '../src/onnx/graph-build.ts';
import { DataType } from '../src/onnx/proto.ts';
import { floatTensor, int64Tensor } from '../src/onnx/tensor.ts';
import { InputError } from '../src/errors.ts';
import { llamaReferenceForward } from './support/llama-reference.ts';

const cfg = { vocabSize: 29, dim: 16, layers: 2, heads: 4, kvHeads: 2, ffn: 24, maxPositions: 16, ropeTheta: 10000, normEps: 1e-6 };

function randomTokens(n: number, vocab: number, seed: string): Int32Array {
  const rng = seedrandom(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng() * vocab));
}

/** logits[b, t, :] = offset for every token: a model that knows nothing. Only input_ids is declared. */
function constantLogitsModel(vocab: number, offset: number, declaredVocab: number | string) {
  return makeModel({
    name: 'const',
    node: [
      node('Cast', ['input_ids'], ['f'], 'cast', { to: DataType.FLOAT }),
      node('Mul', ['f', 'zero'], ['z'], 'mul'),
      node('Unsqueeze', ['z', 'axis2'], ['z3'], 'unsq'),
      node('Shape', ['input_ids'], ['bs'], 'shape'),
      node('Concat', ['bs', 'v'], ['shape3'], 'concat', { axis: 0 }),
      node('Expand', ['z3', 'shape3'], ['e'], 'expand'),
      node('Add', ['e', 'offset'], ['logits'], 'add'),
    ],
    initializer: [
      floatTensor('zero', [], new Float32Array([0])),
      floatTensor('offset', [], new Float32Array([offset])),
      int64Tensor('axis2', [1], [2]),
      int64Tensor('v', [1], [vocab]),
    ],
    input: [valueInfo('input_ids', DataType.INT64, ['batch', 'seq'])],
    output: [valueInfo('logits', DataType.FLOAT, ['batch', 'seq', declaredVocab])],
  });
}

test('a model with constant logits has perplexity equal to the vocabulary size', async () => {
  for (const [vocab, offset, declared] of [[50, 0, 50], [1000, 3e4, 'vocab'], [7, -1e4, 7]] as const) {
    for (const mode of ['onnx', 'js'] as const) {
      const ev = await PerplexityEvaluator.create(constantLogitsModel(vocab, offset, declared), { threads: 1, logSoftmax: mode });
      assert.equal(ev.vocabSize, vocab);
      assert.deepEqual(ev.inputs, ['input_ids']);
      const r = await ev.evaluate(randomTokens(100, vocab, 'c'), { seqlen: 16 });
      assert.equal(r.windows, 6);
      assert.equal(r.tokens, 6 * 15);
      assert.ok(Math.abs(r.ppl - vocab) < vocab * 1e-6, `${mode} vocab ${vocab} offset ${offset}: ppl ${r.ppl}`);
      await ev.release();
    }
  }
});

test('perplexity matches an independent plain-TypeScript computation on a built LLaMA', async () => {
  const w = initLlamaWeights(cfg, 21, 0.25);
  const model = buildLlama(cfg, w);
  const seqlen = 9;
  const tokens = randomTokens(4 * seqlen + 5, cfg.vocabSize, 'p');
  // Reference: windows of seqlen, NLL of tokens 1..seqlen-1 of each, exp of the mean.
  let sum = 0, count = 0;
  for (let wi = 0; wi < 4; wi++) {
    const ids = Array.from(tokens.subarray(wi * seqlen, (wi + 1) * seqlen));
    const logits = llamaReferenceForward(cfg, w, [ids]);
    for (let t = 0; t < seqlen - 1; t++) {
      const row = logits.subarray(t * cfg.vocabSize, (t + 1) * cfg.vocabSize);
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
      sum += lse - row[ids[t + 1]!]!;
      count++;
    }
  }
  const refPpl = Math.exp(sum / count);
  for (const mode of ['onnx', 'js'] as const) {
    const ev = await PerplexityEvaluator.create(model, { threads: 1, logSoftmax: mode });
    for (const batchSize of [1, 3, 16]) {
      const r = await ev.evaluate(tokens, { seqlen, batchSize });
      assert.equal(r.windows, 4);
      assert.equal(r.tokens, count);
      assert.ok(Math.abs(r.ppl - refPpl) < refPpl * 1e-5, `${mode} batch ${batchSize}: ${r.ppl} vs reference ${refPpl}`);
      assert.ok(Math.abs(r.nll - Math.log(r.ppl)) < 1e-12);
    }
    // maxTokens cuts the stream before windowing
    const r2 = await ev.evaluate(tokens, { seqlen, maxTokens: 2 * seqlen + 3 });
    assert.equal(r2.windows, 2);
    await ev.release();
  }
});

test('replacing weights per evaluate() gives exactly what a rebuilt model gives, and defaults come back', async () => {
  const w = initLlamaWeights(cfg, 22, 0.25);
  const style = 'torch-generated';
  const model = buildLlama(cfg, w, { weightNames: style });
  const names = llamaInitializerNames(cfg, style);
  const targets = ['model.layers.0.self_attn.v_proj.weight', 'model.layers.1.mlp.up_proj.weight'];
  const inits = targets.map((t) => names.get(t)!);
  const ev = await PerplexityEvaluator.create(model, { replaceable: inits, threads: 1 });
  const tokens = randomTokens(80, cfg.vocabSize, 's');
  const dense = await ev.evaluate(tokens, { seqlen: 10 });
  const denseRef = await (await PerplexityEvaluator.create(model, { threads: 1 })).evaluate(tokens, { seqlen: 10 });
  assert.equal(dense.nll, denseRef.nll);

  // Prune every other weight of both layers (PyTorch layout), rebuild, compare.
  const w2 = new Map(w);
  const feeds: Record<string, Float32Array> = {};
  for (const t of targets) {
    const pruned = w.get(t)!.map((v, i) => (i % 2 ? 0 : v));
    w2.set(t, pruned);
    // stored layout of a MatMul B initializer: [in, out]
    const out = t.includes('v_proj') ? (cfg.kvHeads * cfg.dim) / cfg.heads : cfg.ffn;
    const inp = cfg.dim;
    const stored = new Float32Array(out * inp);
    for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) stored[i * out + o] = pruned[o * inp + i]!;
    feeds[names.get(t)!] = stored;
  }
  const swapped = await ev.evaluate(tokens, { seqlen: 10, weights: feeds });
  const rebuilt = await (await PerplexityEvaluator.create(buildLlama(cfg, w2, { weightNames: style }), { threads: 1 })).evaluate(tokens, { seqlen: 10 });
  assert.notEqual(swapped.nll, dense.nll);
  assert.equal(swapped.nll, rebuilt.nll);
  assert.equal(swapped.ppl, rebuilt.ppl);
  // only one layer replaced: the other keeps its dense data
  const partial = await ev.evaluate(tokens, { seqlen: 10, weights: { [inits[0]!]: feeds[inits[0]!]! } });
  assert.ok(partial.nll !== swapped.nll && partial.nll !== dense.nll);
  assert.equal((await ev.evaluate(tokens, { seqlen: 10 })).nll, dense.nll);
  // calls must not overlap (feed buffers are reused)
  const first = ev.evaluate(tokens, { seqlen: 10 });
  await assert.rejects(ev.evaluate(tokens, { seqlen: 10 }), /still running/);
  assert.equal((await first).nll, dense.nll);
  await assert.rejects(ev.evaluate(tokens, { seqlen: 10, weights: { 'model.norm.weight': new Float32Array(cfg.dim) } }), /not declared replaceable/);
  await assert.rejects(ev.evaluate(tokens, { seqlen: 10, weights: { [inits[0]!]: new Float32Array(3) } }), /expected/);
});

test('bad input: seqlen over the data, ids outside the vocabulary, no logits, foreign inputs', async () => {
  const model = buildLlama(cfg, initLlamaWeights(cfg, 23));
  const ev = await PerplexityEvaluator.create(model, { threads: 1 });
  const isInput = (re: RegExp) => (e: unknown) => e instanceof InputError && re.test(e.message);
  await assert.rejects(ev.evaluate(randomTokens(20, cfg.vocabSize, 'e'), { seqlen: 32 }), isInput(/seqlen 32 exceeds the data \(20 tokens/));
  await assert.rejects(ev.evaluate(randomTokens(64, cfg.vocabSize, 'e'), { seqlen: 32, maxTokens: 31 }), isInput(/exceeds the data/));
  const bad = randomTokens(40, cfg.vocabSize, 'e');
  bad[17] = cfg.vocabSize;
  await assert.rejects(ev.evaluate(bad, { seqlen: 8 }), isInput(new RegExp(`token id ${cfg.vocabSize} at position 17 is outside`)));
  bad[17] = -1;
  await assert.rejects(ev.evaluate(bad, { seqlen: 8 }), isInput(/token id -1/));
  // ids past the windows actually used are not checked (they are not evaluated)
  bad[17] = 0;
  bad[39] = 999;
  assert.equal((await ev.evaluate(bad, { seqlen: 8, maxTokens: 32 })).windows, 4);

  const noLogits = buildLlama(cfg, initLlamaWeights(cfg, 23));
  noLogits.graph!.output![0]!.name = 'scores';
  noLogits.graph!.node!.find((n) => n.output![0] === 'logits')!.output![0] = 'scores';
  await assert.rejects(PerplexityEvaluator.create(noLogits), isInput(/no 'logits' output \(outputs: scores\)/));
  const extra = buildLlama(cfg, initLlamaWeights(cfg, 23));
  extra.graph!.input!.push(valueInfo('past_key_values.0.key', DataType.FLOAT, ['batch', 2, 'past', 4]));
  await assert.rejects(PerplexityEvaluator.create(extra), isInput(/past_key_values.0.key/));
});

/** Bigram model: logits = Cast(E[ids]) @ Cast(W), emitted as FLOAT16 when halfLogits; E, W stored as `dtype`. */
function bigramModel(E: Float32Array, W: Float32Array, V: number, D: number, dtype: number, halfLogits: boolean) {
  const nodes = [
    node('Gather', ['E', 'input_ids'], ['e'], 'gather'),
    node('Cast', ['e'], ['e32'], 'cast_e', { to: DataType.FLOAT }),
    node('Cast', ['W'], ['w32'], 'cast_w', { to: DataType.FLOAT }),
    node('MatMul', ['e32', 'w32'], [halfLogits ? 'l32' : 'logits'], '/model/layers.0/mlp/down_proj/MatMul'),
  ];
  if (halfLogits) nodes.push(node('Cast', ['l32'], ['logits'], 'cast_l', { to: DataType.FLOAT16 }));
  return makeModel({
    name: 'bigram',
    node: nodes,
    initializer: [floatTensor('E', [V, D], E, dtype), floatTensor('W', [D, V], W, dtype)],
    input: [valueInfo('input_ids', DataType.INT64, ['batch', 'seq'])],
    output: [valueInfo('logits', halfLogits ? DataType.FLOAT16 : DataType.FLOAT, ['batch', 'seq', V])],
  });
}

test('FLOAT16 weights and logits: replaceable half weights, logits cast before log-softmax', async () => {
  const V = 24, D = 8;
  const rng = seedrandom('half');
  const half = (x: number) => Math.round(x * 256) / 256; // exact in FLOAT16 for |x| < 8
  const E = Float32Array.from({ length: V * D }, () => half(rng() * 2 - 1));
  const W = Float32Array.from({ length: D * V }, () => half(rng() * 2 - 1));
  const W2 = Float32Array.from(W, (v, i) => (i % 3 ? v : 0));
  const tokens = randomTokens(120, V, 'h');
  const ref = async (w: Float32Array) => (await (await PerplexityEvaluator.create(bigramModel(E, w, V, D, DataType.FLOAT, false), { threads: 1 })).evaluate(tokens, { seqlen: 12 })).ppl;
  const ev = await PerplexityEvaluator.create(bigramModel(E, W, V, D, DataType.FLOAT16, true), { threads: 1, replaceable: ['W'] });
  assert.equal(ev.vocabSize, V);
  const dense = await ev.evaluate(tokens, { seqlen: 12 });
  const swapped = await ev.evaluate(tokens, { seqlen: 12, weights: { W: W2 } });
  // half logits round to ~3 significant digits; the perplexities agree to that
  const d1 = await ref(W), d2 = await ref(W2);
  assert.ok(Math.abs(dense.ppl - d1) < 2e-3 * d1, `${dense.ppl} vs ${d1}`);
  assert.ok(Math.abs(swapped.ppl - d2) < 2e-3 * d2, `${swapped.ppl} vs ${d2}`);
  assert.ok(Math.abs(d1 - d2) > 1e-2 * d1, 'the swap matters');
});
