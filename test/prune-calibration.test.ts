import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { DataType, type ModelProto } from '../src/onnx/proto.ts';
import { makeModel, node, valueInfo } from '../src/onnx/graph-build.ts';
import { floatTensor } from '../src/onnx/tensor.ts';
import { createSession } from '../src/onnx/session.ts';
import { addOutputs, cloneModel, initializersToInputs } from '../src/onnx/graph-edit.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { collectStatistics, instrumentModel, tokenFeeds } from '../src/prune/calibration.ts';

const VOCAB = 11;
const D = 4;

/**
 * input_ids -> Gather(emb) = x [B,T,4]; a = MatMul(x, A[4,3]); b = MatMul(x, B[4,2]) (shares x);
 * r = Relu(a); y = MatMul(r, C[3,5]) -> logits.
 */
function smallGraph(seed: string, opset = 17): ModelProto {
  const rng = seedrandom(seed);
  const rnd = (n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
  return makeModel({
    name: 'small',
    node: [
      node('Gather', ['emb', 'input_ids'], ['x'], 'embed'),
      node('MatMul', ['x', 'A'], ['a'], 'layer_a'),
      node('MatMul', ['x', 'B'], ['b'], 'layer_b'),
      node('Relu', ['a'], ['r'], 'relu'),
      node('MatMul', ['r', 'C'], ['y'], 'layer_c'),
      node('Add', ['y', 'b0'], ['logits'], 'add'),
    ],
    initializer: [floatTensor('emb', [VOCAB, D], rnd(VOCAB * D)), floatTensor('A', [D, 3], rnd(12)), floatTensor('B', [D, 2], rnd(8)), floatTensor('C', [3, 5], rnd(15)), floatTensor('b0', [5], rnd(5))],
    input: [valueInfo('input_ids', DataType.INT64, ['batch', 'seq'])],
    output: [valueInfo('logits', DataType.FLOAT, ['batch', 'seq', 5]), valueInfo('b', DataType.FLOAT, ['batch', 'seq', 2])],
  }, opset);
}

function windows(n: number, t: number, vocab: number, seed: string): Int32Array[] {
  const rng = seedrandom(seed);
  return Array.from({ length: n }, () => Int32Array.from({ length: t }, () => Math.floor(rng() * vocab)));
}

/** Activations of `tensors` for each window, by running the plain model with them as extra outputs. */
async function activations(model: ModelProto, tensors: string[], wins: Int32Array[]): Promise<Map<string, Float32Array[]>> {
  const m = cloneModel(model);
  addOutputs(m, tensors);
  const s = await createSession(m, { threads: 1 });
  const out = new Map<string, Float32Array[]>(tensors.map((t) => [t, []]));
  for (const w of wins) {
    const r = await s.run(tokenFeeds(m, [w]));
    for (const t of tensors) out.get(t)!.push(Float32Array.from(r[t]!.data as Float32Array));
  }
  await s.release();
  return out;
}

function plainX(acts: Float32Array[], ch: number): Float64Array {
  const x = new Float64Array(ch);
  for (const a of acts) for (let i = 0; i < a.length; i++) x[i % ch] += a[i]! ** 2;
  return x.map((v) => v / acts.length);
}

function plainGram(acts: Float32Array[], ch: number): Float64Array {
  const g = new Float64Array(ch * ch);
  for (const a of acts) {
    for (let t = 0; t < a.length / ch; t++) for (let i = 0; i < ch; i++) for (let j = 0; j < ch; j++) g[i * ch + j] += a[t * ch + i]! * a[t * ch + j]!;
  }
  return g;
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, rel = 1e-5, what = ''): void {
  assert.equal(a.length, b.length, `${what} length`);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= rel * (1 + Math.abs(b[i]!)), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

const layers = [
  { name: 'a', input: 'x', in: D },
  { name: 'b', input: 'x', in: D },
  { name: 'c', input: 'r', in: 3 },
];

for (const opset of [17, 18]) {
  test(`instrumented X and Gram equal plain sums over activations (opset ${opset})`, async () => {
    const model = smallGraph('g', opset);
    const wins = windows(7, 5, VOCAB, 'w');
    const acts = await activations(model, ['x', 'r'], wins);
    const st = await collectStatistics(model, layers, wins, { gram: true, batchSize: 3, threads: 1 });
    assert.equal(st.sequences, 7);
    close(st.X.get('a')!, plainX(acts.get('x')!, D), 1e-5, 'X(a)');
    close(st.X.get('c')!, plainX(acts.get('r')!, 3), 1e-5, 'X(c)');
    assert.equal(st.X.get('a'), st.X.get('b'), 'layers reading one activation share one statistic');
    close(st.gram.get('a')!.gram, plainGram(acts.get('x')!, D), 1e-5, 'gram(a)');
    close(st.gram.get('c')!.gram, plainGram(acts.get('r')!, 3), 1e-5, 'gram(c)');
    assert.equal(st.gram.get('c')!.nsamples, 7);
  });
}

test('instrumentation: one output per distinct input, the graph cut to what the statistics need', () => {
  const model = smallGraph('g');
  const inst = instrumentModel(model, layers, { sumSquares: true, gram: false });
  assert.equal(inst.inputs.length, 2);
  assert.deepEqual(inst.inputs[0]!.layers, ['a', 'b']);
  const outs = inst.model.graph!.output!.map((o) => o.name);
  assert.deepEqual(outs, [inst.inputs[0]!.sumSquares, inst.inputs[1]!.sumSquares]);
  const ops = inst.model.graph!.node!.map((n) => n.name);
  assert.ok(!ops.includes('layer_c') && !ops.includes('add') && !ops.includes('layer_b'), `unneeded nodes removed: ${ops}`);
  assert.ok(ops.includes('layer_a') && ops.includes('relu'));
  const inits = inst.model.graph!.initializer!.map((t) => t.name);
  assert.ok(!inits.includes('C') && !inits.includes('B') && inits.includes('A'));
  // only the first layer: the relu path goes too
  const only = instrumentModel(model, [layers[0]!]);
  assert.deepEqual(only.model.graph!.node!.map((n) => n.name).filter((n) => !n!.startsWith('symprune')), ['embed']);
  // the source model is untouched
  assert.equal(model.graph!.node!.length, 6);
  assert.equal(model.graph!.output!.length, 2);
});

test('weights fed as inputs give the statistics of the fed weights', async () => {
  const model = smallGraph('g');
  const wins = windows(4, 6, VOCAB, 'w2');
  const asInputs = cloneModel(model);
  const [A] = initializersToInputs(asInputs, ['A']);
  const zeroA = new Float32Array(12);
  const st = await collectStatistics(asInputs, [layers[2]!], wins, { weights: new Map([['A', zeroA]]), threads: 1 });
  assert.deepEqual(Array.from(st.X.get('c')!), [0, 0, 0], 'relu(x·0) = 0');
  const dense = await collectStatistics(asInputs, [layers[2]!], wins, { weights: new Map([['A', new Float32Array(new Uint8Array(A!.rawData!).buffer)]]), threads: 1 });
  const ref = await collectStatistics(model, [layers[2]!], wins, { threads: 1 });
  close(dense.X.get('c')!, ref.X.get('c')!, 1e-6, 'X(c)');
  await assert.rejects(collectStatistics(asInputs, [layers[2]!], wins, { threads: 1 }), /model input A is neither/);
});

test('on a built LLaMA: X of every linear layer input equals the plain sum over its activation', async () => {
  const cfg = { vocabSize: 64, dim: 16, layers: 2, heads: 2, kvHeads: 1, ffn: 24, maxPositions: 32, ropeTheta: 10000, normEps: 1e-6 };
  const model = buildLlama(cfg, initLlamaWeights(cfg, 1));
  const ls = model.graph!.node!.filter((n) => n.opType === 'MatMul' && /\/model\/layers\.\d+\/.*_proj\/MatMul$/.test(n.name!)).map((n) => {
    const m = /\/model\/layers\.(\d+)\/(\w+)\/(\w+)\/MatMul/.exec(n.name!)!;
    const w = model.graph!.initializer!.find((t) => t.name === n.input![1])!;
    return { name: `model.layers.${m[1]}.${m[2]}.${m[3]}`, input: n.input![0]!, in: Number(w.dims![0]) };
  });
  assert.equal(ls.length, 14);
  const wins = windows(5, 12, cfg.vocabSize, 'llama');
  const st = await collectStatistics(model, ls, wins, { batchSize: 2, threads: 1 });
  const inputs = [...new Set(ls.map((l) => l.input))];
  assert.equal(inputs.length, 8, 'q/k/v and gate/up share inputs: 4 distinct inputs per block');
  const acts = await activations(model, inputs, wins);
  for (const l of ls) close(st.X.get(l.name)!, plainX(acts.get(l.input)!, l.in), 1e-4, `X(${l.name})`);
});
