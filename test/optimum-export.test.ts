/**
 * Optimum / onnx-community shaped exports, built here with the project's builder:
 * a decoder with a KV cache (past_key_values.N.* in, present.N.* out), a
 * decoder_model_merged graph with If(use_cache_branch), external data in
 * model.onnx_data, torch-style generated weight names; and quantized graphs refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { makeModel, node, valueInfo } from '../src/onnx/graph-build.ts';
import { AttrType, DataType, onnx, type ModelProto, type TensorProto } from '../src/onnx/proto.ts';
import { loadModel, saveModel } from '../src/onnx/model-io.ts';
import { createSession, f32, i64 } from '../src/onnx/session.ts';
import { float32ToBytes, int64Tensor, tensorToFloat32 } from '../src/onnx/tensor.ts';
import { loadModelForms, loadModelGraph, resolveModel } from '../src/model/load.ts';
import { writeOnnxLike } from '../src/model/write.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';
import { discoverLayers } from '../src/prune/discover.ts';
import { pruneModel } from '../src/prune/prune-model.ts';
import { baselineMethod } from '../src/prune/baselines.ts';
import { parsePattern } from '../src/prune/score.ts';
import { InputError } from '../src/errors.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { livelyWeights } from './support/hf-checkpoint.ts';

const c: LlamaConfig = { vocabSize: 41, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };
const w = livelyWeights(c, 5);
const tokens = Int32Array.from({ length: 64 }, (_, i) => (i * 11 + 3) % 41);
const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-optimum-'));

async function ppl(model: ModelProto): Promise<number> {
  const ev = await PerplexityEvaluator.create(model, { threads: 1 });
  return (await ev.evaluate(tokens, { seqlen: 16 })).ppl;
}

/** decoder_model_merged as Optimum writes it: shared weights on top, If(use_cache_branch) choosing the with-past or no-past decoder. */
function mergedDecoder(): ModelProto {
  const withPast = buildLlama(c, w, { cache: 'past', weightNames: 'torch-generated' });
  const noPast = buildLlama(c, w, { cache: 'present', weightNames: 'torch-generated' });
  const branch = (m: ModelProto, name: string) => onnx.GraphProto.create({ name, node: m.graph!.node, output: m.graph!.output });
  const outputs = withPast.graph!.output!;
  const ifNode = node('If', ['use_cache_branch'], outputs.map((o) => o.name!), 'optimum::if');
  ifNode.attribute = [
    { name: 'then_branch', type: AttrType.GRAPH, g: branch(withPast, 'with_past') },
    { name: 'else_branch', type: AttrType.GRAPH, g: branch(noPast, 'no_past') },
  ];
  return makeModel({
    name: 'main_graph',
    initializer: withPast.graph!.initializer,
    input: [...withPast.graph!.input!, valueInfo('use_cache_branch', DataType.BOOL, [1])],
    output: outputs,
    node: [ifNode],
  });
}

test('the KV-cache fixture is a real cache: prefix + one cached step gives the full run\'s last logits', async () => {
  const s = await createSession(buildLlama(c, w, { cache: 'past' }), { threads: 1 });
  const ids = [5, 9, 1, 30, 2, 7];
  const empty = Object.fromEntries(Array.from({ length: c.layers }, (_, i) => ['key', 'value'].map((kv) => [`past_key_values.${i}.${kv}`, f32(new Float32Array(0), [1, c.kvHeads, 0, 8])])).flat());
  const run = (x: number[], past: Record<string, unknown>, p0: number) =>
    s.run({ input_ids: i64(x, [1, x.length]), attention_mask: i64(new Array(p0 + x.length).fill(1), [1, p0 + x.length]), position_ids: i64(x.map((_, i) => p0 + i), [1, x.length]), ...past } as never);
  const full = await run(ids, empty, 0);
  const prefix = await run(ids.slice(0, 5), empty, 0);
  const past = Object.fromEntries(Array.from({ length: c.layers }, (_, i) => ['key', 'value'].map((kv) => [`past_key_values.${i}.${kv}`, prefix[`present.${i}.${kv}`]!])).flat());
  const step = await run(ids.slice(5), past, 5);
  const V = c.vocabSize;
  const a = (full.logits!.data as Float32Array).subarray(5 * V);
  const b = step.logits!.data as Float32Array;
  for (let i = 0; i < V; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-4, `logit ${i}: ${a[i]} vs ${b[i]}`);
});

test('Optimum decoders (with past, and merged with use_cache_branch, external model.onnx_data) evaluate like the same weights without a cache', async () => {
  const plain = await ppl(buildLlama(c, w));
  const dir = tmp();
  await saveModel(buildLlama(c, w, { cache: 'past', weightNames: 'torch-generated' }), path.join(dir, 'decoder_model.onnx'));
  const d1 = resolveModel(dir);
  assert.equal(path.basename(d1.modelPath), 'decoder_model.onnx');
  assert.ok(Math.abs((await ppl(await loadModelGraph(d1))) - plain) / plain < 1e-6);

  // onnx-community layout: tokenizer at the root, the graph under onnx/ with model.onnx_data.
  const root = tmp();
  fs.mkdirSync(path.join(root, 'onnx'));
  fs.writeFileSync(path.join(root, 'tokenizer.json'), '{}');
  await saveModel(mergedDecoder(), path.join(root, 'onnx', 'decoder_model_merged.onnx'), { externalData: 'always', location: 'model.onnx_data' });
  assert.ok(fs.existsSync(path.join(root, 'onnx', 'model.onnx_data')));
  const d2 = resolveModel(root);
  assert.equal(d2.tokenizerPath, path.join(root, 'tokenizer.json'));
  const merged = await loadModelGraph(d2);
  assert.deepEqual(merged.graph!.input!.map((i) => i.name), ['input_ids', 'attention_mask', 'position_ids']);
  assert.deepEqual(merged.graph!.output!.map((o) => o.name), ['logits']);
  assert.ok(Math.abs((await ppl(merged)) - plain) / plain < 1e-6);

  // Layers named in PyTorch's convention although the weights are onnx::MatMul_N.
  const names = discoverLayers(merged).map((l) => l.name);
  assert.deepEqual(names, discoverLayers(buildLlama(c, w)).map((l) => l.name));
  assert.equal(names[0], 'model.layers.0.self_attn.q_proj');
  assert.ok(discoverLayers(merged)[0]!.initializer.startsWith('onnx::MatMul_'));
});

test('a pruned Optimum decoder is written back with its KV cache and the pruned weights', async () => {
  const root = tmp();
  await saveModel(mergedDecoder(), path.join(root, 'decoder_model_merged.onnx'));
  const d = resolveModel(root);
  const { model, original } = await loadModelForms(d);
  const windows = [tokens.subarray(0, 16), tokens.subarray(16, 32)];
  await pruneModel(model, { method: baselineMethod('wanda'), sparsity: 0.5, pattern: parsePattern('unstructured', 0.5), windows, threads: 1 });
  const pruned = await ppl(model);
  const out = tmp();
  await writeOnnxLike(d, original, out);
  const raw = await loadModel(path.join(out, 'model.onnx'));
  assert.ok(raw.graph!.input!.some((i) => i.name === 'past_key_values.1.value') && raw.graph!.input!.some((i) => i.name === 'use_cache_branch'), 'cache inputs kept');
  assert.ok(raw.graph!.output!.some((o) => o.name === 'present.0.key'), 'present outputs kept');
  assert.equal(await ppl(await loadModelGraph(resolveModel(out))), pruned);
});

/** The graph in float16 throughout (weights, constants, inputs and outputs), as Optimum's --fp16 export. */
function toFloat16(m: ModelProto): ModelProto {
  const half = (t: TensorProto): void => {
    if (t.dataType !== DataType.FLOAT) return;
    t.rawData = float32ToBytes(tensorToFloat32(t).map((v) => Math.max(-65504, v)), DataType.FLOAT16);
    t.floatData = [];
    t.dataType = DataType.FLOAT16;
  };
  for (const t of m.graph!.initializer!) half(t);
  for (const n of m.graph!.node!) for (const a of n.attribute ?? []) if (a.t) half(a.t);
  for (const v of [...m.graph!.input!, ...m.graph!.output!]) if (v.type?.tensorType?.elemType === DataType.FLOAT) v.type.tensorType.elemType = DataType.FLOAT16;
  return m;
}

test('a float16 decoder with a KV cache: empty f16 pasts, f16 layers found, pruned and written back in f16', async () => {
  const plain = await ppl(buildLlama(c, w));
  const dir = tmp();
  await saveModel(toFloat16(buildLlama(c, w, { cache: 'past' })), path.join(dir, 'model.onnx'));
  const d = resolveModel(dir);
  const { model, original } = await loadModelForms(d);
  const dense = await ppl(model);
  assert.ok(Math.abs(dense - plain) / plain < 5e-3, `f16 ${dense} vs f32 ${plain}`);
  const layers = discoverLayers(model);
  assert.equal(layers.length, 14);
  assert.ok(layers.every((l) => l.dataType === DataType.FLOAT16));
  await pruneModel(model, { method: baselineMethod('magnitude'), sparsity: 0.5, pattern: parsePattern('unstructured', 0.5), threads: 1 });
  const out = tmp();
  await writeOnnxLike(d, original, out);
  const back = await loadModelGraph(resolveModel(out));
  const q = back.graph!.initializer!.find((t) => t.name === 'model.layers.0.self_attn.q_proj.weight')!;
  assert.equal(q.dataType, DataType.FLOAT16);
  assert.equal(tensorToFloat32(q).filter((v) => v === 0).length, 32 * 32 / 2);
  assert.equal(await ppl(back), await ppl(model));
});

test('quantized graphs are refused with one line asking for the float model', async () => {
  const dir = tmp();
  const nbits = makeModel({
    name: 'q',
    node: [node('MatMulNBits', ['x', 'wq', 'scales'], ['y'], '/model/layers.0/self_attn/q_proj/MatMul_Q4')],
    initializer: [],
    input: [valueInfo('x', DataType.FLOAT, [1, 32])],
    output: [valueInfo('y', DataType.FLOAT, [1, 32])],
  });
  nbits.graph!.node![0]!.domain = 'com.microsoft';
  await saveModel(nbits, path.join(dir, 'model_q4.onnx'));
  await assert.rejects(loadModelGraph(resolveModel(path.join(dir, 'model_q4.onnx'))), (e: Error) => e instanceof InputError && /quantized graph \(MatMulNBits nodes\).*float/.test(e.message));

  const int8 = makeModel({
    name: 'q8',
    node: [node('MatMul', ['x', 'w8'], ['y'], '/model/layers.0/mlp/up_proj/MatMul')],
    initializer: [{ name: 'w8', dims: [32, 32], dataType: DataType.INT8, rawData: new Uint8Array(1024) }, int64Tensor('unused', [1], [0])],
    input: [valueInfo('x', DataType.FLOAT, [1, 32])],
    output: [valueInfo('y', DataType.FLOAT, [1, 32])],
  });
  await saveModel(int8, path.join(dir, 'model_int8.onnx'));
  await assert.rejects(loadModelGraph(resolveModel(path.join(dir, 'model_int8.onnx'))), (e: Error) => e instanceof InputError && /quantized graph \(8\/4-bit weight w8\)/.test(e.message));
});
