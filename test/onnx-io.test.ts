import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel, saveModel } from '../src/onnx/model-io.ts';
import { addOutputs, cloneModel, consumersOf, findInitializer, initializersToInputs, producerOf } from '../src/onnx/graph-edit.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { encodeModel, DataType, onnx } from '../src/onnx/proto.ts';
import { floatTensor, tensorToFloat32 } from '../src/onnx/tensor.ts';
import { createSession, f32, i64 } from '../src/onnx/session.ts';
import { InputError } from '../src/errors.ts';

const cfg = { vocabSize: 50, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 16, ropeTheta: 10000, normEps: 1e-6 };

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-io-'));
}

async function logitsOf(model: ReturnType<typeof buildLlama>): Promise<Float32Array> {
  const s = await createSession(model, { threads: 1 });
  const ids = [3, 1, 4, 1, 5, 9];
  const out = await s.run({ input_ids: i64(ids, [1, 6]), attention_mask: i64([1, 1, 1, 1, 1, 1], [1, 6]), position_ids: i64([0, 1, 2, 3, 4, 5], [1, 6]) });
  return out.logits!.data as Float32Array;
}

test('write -> read round trip is lossless, inline and with external data', async () => {
  const model = buildLlama(cfg, initLlamaWeights(cfg, 7), { weightNames: 'torch-generated' });
  const bytes = encodeModel(model);
  const dir = tmpdir();
  try {
    // inline
    const inline = path.join(dir, 'inline.onnx');
    const r1 = await saveModel(model, inline, { externalData: 'never' });
    assert.equal(r1.externalDataFile, undefined);
    assert.deepEqual(fs.readdirSync(dir), ['inline.onnx']);
    assert.deepEqual(encodeModel(await loadModel(inline)), bytes);

    // external: one data file beside the model, tensors referenced by location/offset/length
    const sub = path.join(dir, 'ext');
    const ext = path.join(sub, 'model.onnx');
    const r2 = await saveModel(model, ext, { externalData: 'always' });
    assert.equal(r2.externalDataFile, path.join(sub, 'model.onnx.data'));
    assert.deepEqual(fs.readdirSync(sub).sort(), ['model.onnx', 'model.onnx.data']);
    const onDisk = onnx.ModelProto.decode(fs.readFileSync(ext));
    const big = onDisk.graph!.initializer!.filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
    assert.ok(big.length >= cfg.layers * 7 + 2, `${big.length} external tensors`);
    let expectedEnd = 0;
    for (const t of big) {
      const kv = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]));
      assert.equal(kv.location, 'model.onnx.data');
      assert.ok((t.rawData ?? []).length === 0);
      expectedEnd = Math.max(expectedEnd, Number(kv.offset) + Number(kv.length));
    }
    assert.equal(fs.statSync(r2.externalDataFile!).size, expectedEnd);
    assert.ok(fs.statSync(ext).size < bytes.length / 2, 'weights are not inline');
    // the caller's model is untouched
    assert.deepEqual(encodeModel(model), bytes);
    const back = await loadModel(ext);
    assert.deepEqual(encodeModel(back), bytes);
    // and onnxruntime agrees
    assert.deepEqual(await logitsOf(back), await logitsOf(model));

    // auto picks inline under the threshold and external above it; custom location
    const auto = path.join(dir, 'auto.onnx');
    assert.equal((await saveModel(model, auto)).externalDataFile, undefined);
    const r3 = await saveModel(model, auto, { threshold: 1000, location: 'weights.bin' });
    assert.equal(r3.externalDataFile, path.join(dir, 'weights.bin'));
    assert.deepEqual(encodeModel(await loadModel(auto)), bytes);
    assert.ok(!fs.readdirSync(dir).some((f) => f.includes('.tmp-')), 'no temporary files left');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('loadModel resolves external data written by other tools (no length, shared file, FLOAT16)', async () => {
  const dir = tmpdir();
  try {
    const a = new Float32Array([1, -2, 3.5, 4, 0.25, -0.5]);
    const b = new Float32Array([0.5, 1.5, -2.5]);
    const bHalf = floatTensor('b', [3], b, DataType.FLOAT16).rawData!;
    const pad = new Uint8Array(13);
    fs.writeFileSync(path.join(dir, 'w.bin'), Buffer.concat([pad, new Uint8Array(a.buffer), bHalf]));
    const model = onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        node: [{ opType: 'Identity', input: ['A'], output: ['Y'] }],
        initializer: [
          { name: 'A', dims: [2, 3], dataType: DataType.FLOAT, dataLocation: 1, externalData: [{ key: 'location', value: 'w.bin' }, { key: 'offset', value: '13' }, { key: 'length', value: '24' }] },
          { name: 'b', dims: [3], dataType: DataType.FLOAT16, dataLocation: 1, externalData: [{ key: 'location', value: 'w.bin' }, { key: 'offset', value: '37' }] },
        ],
        output: [{ name: 'Y', type: { tensorType: { elemType: DataType.FLOAT } } }],
      },
    });
    fs.writeFileSync(path.join(dir, 'm.onnx'), encodeModel(model));
    const back = await loadModel(path.join(dir, 'm.onnx'));
    assert.deepEqual(tensorToFloat32(findInitializer(back, 'A')!), a);
    assert.deepEqual(tensorToFloat32(findInitializer(back, 'b')!), b);
    fs.rmSync(path.join(dir, 'w.bin'));
    await assert.rejects(loadModel(path.join(dir, 'm.onnx')), (e: unknown) => e instanceof InputError && /external data file not found/.test(e.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('loadModel: clear InputError for a missing file and a non-ONNX file', async () => {
  const dir = tmpdir();
  try {
    await assert.rejects(loadModel(path.join(dir, 'nope.onnx')), (e: unknown) => e instanceof InputError && /not found/.test(e.message));
    fs.writeFileSync(path.join(dir, 'text.onnx'), 'this is a text file, not a model\n');
    await assert.rejects(loadModel(path.join(dir, 'text.onnx')), (e: unknown) => e instanceof InputError && /is not an ONNX model/.test(e.message));
    fs.writeFileSync(path.join(dir, 'empty.onnx'), '');
    await assert.rejects(loadModel(path.join(dir, 'empty.onnx')), (e: unknown) => e instanceof InputError && /is not an ONNX model/.test(e.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('initializersToInputs makes weights feedable; addOutputs exposes intermediates; lookups', async () => {
  const w = initLlamaWeights(cfg, 3);
  const model = buildLlama(cfg, w);
  const name = 'model.layers.1.mlp.up_proj.weight';
  const m = cloneModel(model);
  const [removed] = initializersToInputs(m, [name]);
  assert.equal(findInitializer(m, name), undefined);
  assert.ok(findInitializer(model, name), 'clone leaves the original alone');
  const inp = m.graph!.input!.find((v) => v.name === name)!;
  assert.deepEqual(inp.type!.tensorType!.shape!.dim!.map((d) => Number(d.dimValue)), [cfg.dim, cfg.ffn]);
  assert.throws(() => initializersToInputs(cloneModel(model), ['nope']), /not initializers/);

  const q = '/model/layers.0/self_attn/q_proj/MatMul_output_0';
  addOutputs(m, [q, q]);
  assert.equal(m.graph!.output!.filter((o) => o.name === q).length, 1);
  assert.equal(producerOf(m, q)!.name, '/model/layers.0/self_attn/q_proj/MatMul');
  assert.ok(consumersOf(m, q).some((n) => n.opType === 'Reshape'));

  const s = await createSession(m, { threads: 1 });
  const feeds = { input_ids: i64([1, 2, 3], [1, 3]), attention_mask: i64([1, 1, 1], [1, 3]), position_ids: i64([0, 1, 2], [1, 3]) };
  const data = tensorToFloat32(removed!);
  const base = await s.run({ ...feeds, [name]: f32(data, [cfg.dim, cfg.ffn]) });
  assert.deepEqual(base[q]!.dims, [1, 3, cfg.dim]);
  assert.deepEqual(base.logits!.data, await logitsOfFeeds(model, feeds));
  const zero = await s.run({ ...feeds, [name]: f32(new Float32Array(data.length), [cfg.dim, cfg.ffn]) });
  assert.notDeepEqual(zero.logits!.data, base.logits!.data);
});

async function logitsOfFeeds(model: ReturnType<typeof buildLlama>, feeds: Record<string, ReturnType<typeof i64>>) {
  const s = await createSession(model, { threads: 1 });
  return (await s.run(feeds)).logits!.data;
}
