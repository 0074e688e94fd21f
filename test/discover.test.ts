import { test } from 'node:test';
import assert from 'node:assert/strict';
import { discoverLayers, readLayerWeight, writeLayerWeight } from '../src/prune/discover.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { cloneModel, findInitializer } from '../src/onnx/graph-edit.ts';
import { DataType, type ModelProto } from '../src/onnx/proto.ts';
import { floatTensor, tensorToFloat32 } from '../src/onnx/tensor.ts';
import { makeModel, node, valueInfo } from '../src/onnx/graph-build.ts';
import { createSession, i64 } from '../src/onnx/session.ts';

const cfg = { vocabSize: 40, dim: 16, layers: 2, heads: 4, kvHeads: 2, ffn: 24, maxPositions: 16, ropeTheta: 10000, normEps: 1e-6 };
const PROJ = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

function expectedShape(proj: string): [number, number] {
  const kv = (cfg.kvHeads * cfg.dim) / cfg.heads;
  return ({ q_proj: [16, 16], k_proj: [kv, 16], v_proj: [kv, 16], o_proj: [16, 16], gate_proj: [24, 16], up_proj: [24, 16], down_proj: [16, 24] } as Record<string, [number, number]>)[proj.split('.')[1]!]!;
}

for (const style of ['module', 'torch-generated'] as const) {
  test(`builder graph (${style} weight names): layers, shapes, blocks, and weights in PyTorch layout`, () => {
    const w = initLlamaWeights(cfg, 11);
    const model = buildLlama(cfg, w, { weightNames: style });
    const layers = discoverLayers(model);
    assert.deepEqual(layers.map((l) => l.name).sort(), [0, 1].flatMap((i) => PROJ.map((p) => `model.layers.${i}.${p}`)).sort());
    for (const l of layers) {
      assert.equal(l.opType, 'MatMul');
      assert.equal(l.storedTransposed, true);
      assert.equal(l.dataType, DataType.FLOAT);
      assert.equal(l.block, Number(l.name.split('.')[2]));
      assert.deepEqual([l.out, l.in], expectedShape(l.name.split('.').slice(3).join('.')));
      assert.equal(l.nodeName, `/${l.name.replace(/^model\.layers\.(\d+)\./, 'model/layers.$1/').replace(/\./g, '/').replace('layers/', 'layers.')}/MatMul`);
      if (style === 'torch-generated') assert.match(l.initializer, /^onnx::MatMul_\d+$/);
      assert.match(l.input, /_output_0$/);
      // the weight read back equals the PyTorch-layout weight the model was built from
      assert.deepEqual(readLayerWeight(model, l), w.get(`${l.name}.weight`));
    }
    const withHead = discoverLayers(model, { includeHead: true, includeEmbeddings: true });
    const head = withHead.find((l) => l.name === 'lm_head')!;
    assert.deepEqual([head.out, head.in, head.block], [cfg.vocabSize, cfg.dim, -1]);
    assert.deepEqual(readLayerWeight(model, head), w.get('lm_head.weight'));
    const emb = withHead.find((l) => l.name === 'model.embed_tokens')!;
    assert.deepEqual([emb.opType, emb.out, emb.in, emb.input, emb.storedTransposed], ['Gather', cfg.vocabSize, cfg.dim, 'input_ids', false]);
    assert.deepEqual(readLayerWeight(model, emb), w.get('model.embed_tokens.weight'));
    assert.equal(withHead.length, layers.length + 2, 'rotary tables are not embeddings');
  });
}

test('writeLayerWeight changes the model exactly as rebuilding with the new weight does', async () => {
  const w = initLlamaWeights(cfg, 12, 0.2);
  const model = buildLlama(cfg, w, { weightNames: 'torch-generated' });
  const edited = cloneModel(model);
  const layer = discoverLayers(edited).find((l) => l.name === 'model.layers.1.mlp.down_proj')!;
  const nw = readLayerWeight(edited, layer).map((v, i) => (i % 3 === 0 ? 0 : v * 1.5));
  writeLayerWeight(edited, layer, nw);
  assert.deepEqual(readLayerWeight(edited, layer), nw);
  assert.notDeepEqual(readLayerWeight(model, layer), nw, 'the clone shares no bytes that were written');
  const w2 = new Map(w);
  w2.set('model.layers.1.mlp.down_proj.weight', nw);
  const rebuilt = buildLlama(cfg, w2, { weightNames: 'torch-generated' });
  const run = async (m: ModelProto) => {
    const s = await createSession(m, { threads: 1 });
    const r = await s.run({ input_ids: i64([5, 6, 7, 8], [1, 4]), attention_mask: i64([1, 1, 1, 1], [1, 4]), position_ids: i64([0, 1, 2, 3], [1, 4]) });
    return r.logits!.data;
  };
  assert.deepEqual(await run(edited), await run(rebuilt));
  assert.notDeepEqual(await run(edited), await run(model));
});

/** A hand-made graph shaped like other exporters: Gemm transB=1, MatMul(Transpose(W)), FLOAT16, no module names on some nodes. */
test('torch-export shapes: Gemm transB, Transpose-fed MatMul, FLOAT16 weights, names from initializers', () => {
  const out = 3, inp = 5;
  const W = Float32Array.from({ length: out * inp }, (_, i) => (i - 7) / 8); // exact in FLOAT16
  const Wt = new Float32Array(out * inp);
  for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) Wt[i * out + o] = W[o * inp + i]!;
  const model = makeModel({
    name: 'g',
    node: [
      node('Gemm', ['x', 'model.layers.3.mlp.down_proj.weight', 'b'], ['y1'], '/model/layers.3/mlp/down_proj/Gemm', { transB: 1 }),
      node('Transpose', ['model.layers.4.self_attn.o_proj.weight'], ['wt'], 'Transpose_7', { perm: [1, 0] }),
      node('MatMul', ['x', 'wt'], ['y2'], 'MatMul_8'),
      node('MatMul', ['x', 'onnx::MatMul_99'], ['y3'], '/transformer/h.2/attn/c_proj/MatMul'),
      node('MatMul', ['x', 'onnx::MatMul_100'], ['y4'], '/model/some_adapter/MatMul'),
      node('MatMul', ['x', 'onnx::MatMul_101'], ['y5'], '/model/layers.0/mlp/up_proj/MatMul'),
    ],
    initializer: [
      floatTensor('model.layers.3.mlp.down_proj.weight', [out, inp], W),
      floatTensor('b', [out], new Float32Array(out)),
      floatTensor('model.layers.4.self_attn.o_proj.weight', [out, inp], W, DataType.FLOAT16),
      floatTensor('onnx::MatMul_99', [inp, out], Wt, DataType.FLOAT16),
      floatTensor('onnx::MatMul_100', [inp, out], Wt),
      { name: 'onnx::MatMul_101', dims: [inp, out], dataType: DataType.INT32, int32Data: Array.from({ length: inp * out }, () => 1) },
    ],
    input: [valueInfo('x', DataType.FLOAT, ['n', inp])],
    output: ['y1', 'y2', 'y3', 'y4', 'y5'].map((n) => valueInfo(n, DataType.FLOAT, ['n', out])),
  });
  const layers = discoverLayers(model);
  assert.deepEqual(layers.map((l) => [l.name, l.opType, l.storedTransposed, l.block, l.dataType, l.out, l.in]), [
    ['model.layers.3.mlp.down_proj', 'Gemm', false, 3, DataType.FLOAT, out, inp],
    ['model.layers.4.self_attn.o_proj', 'MatMul', false, 4, DataType.FLOAT16, out, inp],
    ['transformer.h.2.attn.c_proj', 'MatMul', true, 2, DataType.FLOAT16, out, inp],
  ]);
  for (const l of layers) assert.deepEqual(readLayerWeight(model, l), W, l.name);
  // FLOAT16 write: stored as half bits in the stored layout, read back rounded to half
  const l3 = layers[2]!;
  const nw = Float32Array.from(W, (v) => v + 1 / 3);
  writeLayerWeight(model, l3, nw);
  const t = findInitializer(model, 'onnx::MatMul_99')!;
  assert.equal(t.dataType, DataType.FLOAT16);
  assert.equal(t.rawData!.length, 2 * out * inp);
  const back = readLayerWeight(model, l3);
  for (let i = 0; i < nw.length; i++) assert.ok(Math.abs(back[i]! - nw[i]!) <= Math.abs(nw[i]!) * 2 ** -11 + 1e-7, `half rounding at ${i}`);
  // stored layout is [in, out]
  const stored = tensorToFloat32(t);
  assert.equal(stored[1 * out + 2], back[2 * inp + 1]);
  // Gemm [out, in] storage writes without transposing
  writeLayerWeight(model, layers[0]!, nw);
  assert.deepEqual(tensorToFloat32(findInitializer(model, 'model.layers.3.mlp.down_proj.weight')!), nw);
});
