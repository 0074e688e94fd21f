import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLlama, llamaInitializerNames } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights, llamaWeightSpecs } from '../src/onnx/llama-weights.ts';
import { validateLlamaConfig, llamaParamCount, type LlamaConfig } from '../src/onnx/llama-config.ts';
import { createSession, i64 } from '../src/onnx/session.ts';
import { InputError } from '../src/errors.ts';
import { llamaReferenceForward } from './support/llama-reference.ts';

const gqa: LlamaConfig = { vocabSize: 37, dim: 24, layers: 2, heads: 4, kvHeads: 2, ffn: 40, maxPositions: 32, ropeTheta: 10000, normEps: 1e-5 };

/** Weights with larger spread than the 0.02 init, so attention is far from uniform. */
function lively(c: LlamaConfig, seed: number) {
  const w = initLlamaWeights(c, seed, 0.3);
  // Non-trivial norm weights too.
  let k = 0;
  for (const [name, data] of w) if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') for (let i = 0; i < data.length; i++) data[i] = 0.5 + ((k++ * 7919) % 101) / 100;
  return w;
}

async function runOnnx(c: LlamaConfig, w: Map<string, Float32Array>, ids: number[][], mask: number[][], pos: number[][], weightNames?: 'module' | 'torch-generated') {
  const session = await createSession(buildLlama(c, w, { weightNames }), { threads: 1 });
  const B = ids.length, S = ids[0]!.length;
  const out = await session.run({ input_ids: i64(ids.flat(), [B, S]), attention_mask: i64(mask.flat(), [B, S]), position_ids: i64(pos.flat(), [B, S]) });
  const logits = out.logits!;
  assert.deepEqual(logits.dims, [B, S, c.vocabSize]);
  return logits.data as Float32Array;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('ONNX logits match the plain TypeScript forward (GQA, left padding, both naming styles)', async () => {
  const w = lively(gqa, 1);
  const ids = [[1, 5, 9, 36, 0, 2, 3, 4, 17, 22], [0, 0, 0, 7, 8, 9, 10, 11, 12, 13]];
  const mask = [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]];
  // Left-padded row: positions count from the first real token, as generate() does.
  const pos = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 1, 0, 1, 2, 3, 4, 5, 6]];
  const ref = llamaReferenceForward(gqa, w, ids, mask, pos);
  let spread = 0;
  for (const v of ref) spread = Math.max(spread, Math.abs(v));
  assert.ok(spread > 0.5, `reference logits too flat to test anything (${spread})`);
  for (const style of ['module', 'torch-generated'] as const) {
    const got = await runOnnx(gqa, w, ids, mask, pos, style);
    for (const v of got) assert.ok(Number.isFinite(v), 'fully padded rows must stay finite');
    const d = maxAbsDiff(got, ref);
    assert.ok(d < 1e-4, `${style}: max |onnx - reference| = ${d}`);
  }
});

test('multi-head attention without GQA, right padding, larger rope positions', async () => {
  const c: LlamaConfig = { ...gqa, heads: 3, kvHeads: 3, dim: 18, layers: 1, maxPositions: 200, ropeTheta: 500 };
  const w = lively(c, 2);
  const ids = [[3, 1, 4, 1, 5, 9, 2, 6]];
  const mask = [[1, 1, 1, 1, 1, 1, 0, 0]];
  const pos = [[150, 151, 152, 153, 154, 155, 156, 157]];
  const ref = llamaReferenceForward(c, w, ids, mask, pos);
  const got = await runOnnx(c, w, ids, mask, pos);
  const d = maxAbsDiff(got, ref);
  assert.ok(d < 1e-4, `max |onnx - reference| = ${d}`);
});

test('padding changes only the rows that attend to padded tokens; causality holds', async () => {
  const w = lively(gqa, 3);
  const ids = [[4, 8, 15, 16, 23, 30]];
  const pos = [[0, 1, 2, 3, 4, 5]];
  const full = await runOnnx(gqa, w, ids, [[1, 1, 1, 1, 1, 1]], pos);
  const changedTail = await runOnnx(gqa, w, [[4, 8, 15, 16, 23, 1]], [[1, 1, 1, 1, 1, 1]], pos);
  const V = gqa.vocabSize;
  // causal: changing the last token leaves earlier positions' logits unchanged
  assert.ok(maxAbsDiff(full.subarray(0, 5 * V), changedTail.subarray(0, 5 * V)) < 1e-6, 'earlier rows unchanged');
  assert.ok(maxAbsDiff(full.subarray(5 * V), changedTail.subarray(5 * V)) > 1e-3, 'last row changed');
  // masking key 2 changes the rows that could see it (positions >= 2) only
  const masked = await runOnnx(gqa, w, ids, [[1, 1, 0, 1, 1, 1]], pos);
  assert.ok(maxAbsDiff(full.subarray(0, 2 * V), masked.subarray(0, 2 * V)) < 1e-6, 'rows before the masked key unchanged');
  for (let t = 2; t < 6; t++) assert.ok(maxAbsDiff(full.subarray(t * V, (t + 1) * V), masked.subarray(t * V, (t + 1) * V)) > 1e-4, `row ${t} changed`);
});

test('graph is torch-export shaped: opset 17, module-path node names, [in,out] MatMul weights', () => {
  const w = initLlamaWeights(gqa, 5);
  for (const style of ['module', 'torch-generated'] as const) {
    const m = buildLlama(gqa, w, { weightNames: style });
    assert.equal(Number(m.opsetImport![0]!.version), 17);
    const g = m.graph!;
    assert.deepEqual(g.input!.map((v) => v.name), ['input_ids', 'attention_mask', 'position_ids']);
    assert.deepEqual(g.output!.map((v) => v.name), ['logits']);
    const q = g.node!.find((n) => n.name === '/model/layers.1/self_attn/q_proj/MatMul');
    assert.ok(q, 'q_proj MatMul node with module path');
    const names = llamaInitializerNames(gqa, style);
    const qName = names.get('model.layers.1.self_attn.q_proj.weight')!;
    assert.equal(q!.input![1], qName);
    if (style === 'torch-generated') assert.match(qName, /^onnx::MatMul_\d+$/);
    else assert.equal(qName, 'model.layers.1.self_attn.q_proj.weight');
    const init = g.initializer!.find((t) => t.name === qName)!;
    assert.deepEqual(init.dims!.map(Number), [gqa.dim, gqa.dim]);
    const kInit = g.initializer!.find((t) => t.name === names.get('model.layers.0.self_attn.k_proj.weight'))!;
    assert.deepEqual(kInit.dims!.map(Number), [gqa.dim, (gqa.kvHeads * gqa.dim) / gqa.heads]);
    const matmuls = g.node!.filter((n) => n.opType === 'MatMul' && g.initializer!.some((t) => t.name === n.input![1]));
    assert.equal(matmuls.length, gqa.layers * 7 + 1);
    const ops = new Set(g.node!.map((n) => n.opType));
    for (const op of ops) assert.ok(['Constant', 'Shape', 'Gather', 'ConstantOfShape', 'Trilu', 'Equal', 'Unsqueeze', 'Where', 'Pow', 'ReduceMean', 'Add', 'Sqrt', 'Reciprocal', 'Mul', 'MatMul', 'Reshape', 'Transpose', 'Slice', 'Neg', 'Concat', 'Expand', 'Softmax', 'Sigmoid'].includes(op!), `unexpected op ${op}`);
  }
  // parameter count of the weights map matches the formula
  const total = llamaWeightSpecs(gqa).reduce((s, x) => s + w.get(x.name)!.length, 0);
  assert.equal(total, llamaParamCount(gqa));
});

test('initLlamaWeights is seeded with std 0.02 and unit norms', () => {
  const a = initLlamaWeights(gqa, 42);
  const b = initLlamaWeights(gqa, 42);
  const c = initLlamaWeights(gqa, 43);
  const q = a.get('model.layers.0.mlp.up_proj.weight')!;
  assert.deepEqual(q, b.get('model.layers.0.mlp.up_proj.weight'));
  assert.notDeepEqual(q, c.get('model.layers.0.mlp.up_proj.weight'));
  const emb = a.get('model.embed_tokens.weight')!;
  let s = 0, s2 = 0;
  for (const v of emb) { s += v; s2 += v * v; }
  const mean = s / emb.length, std = Math.sqrt(s2 / emb.length - mean * mean);
  assert.ok(Math.abs(std - 0.02) < 0.002, `std ${std}`);
  assert.ok(a.get('model.norm.weight')!.every((v) => v === 1));
});

test('config validation names the bad field', () => {
  assert.throws(() => validateLlamaConfig({ ...gqa, heads: 5 }), (e: unknown) => e instanceof InputError && /divisible/.test(e.message));
  assert.throws(() => validateLlamaConfig({ ...gqa, kvHeads: 3 }), (e: unknown) => e instanceof InputError && /kvHeads/.test(e.message));
  assert.throws(() => validateLlamaConfig({ ...gqa, layers: 0 }), (e: unknown) => e instanceof InputError && /layers/.test(e.message));
  assert.throws(() => validateLlamaConfig({ ...gqa, normEps: -1 }), (e: unknown) => e instanceof InputError && /normEps/.test(e.message));
  assert.throws(() => buildLlama(gqa, new Map()), (e: unknown) => e instanceof InputError && /missing/.test(e.message));
});
