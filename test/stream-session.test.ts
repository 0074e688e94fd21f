import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { checkDeviceFlags, createSession, weightsToFeed, ort } from '../src/onnx/session.ts';
import { tokenFeeds } from '../src/prune/calibration.ts';
import { InputError } from '../src/errors.ts';

const cfg = { vocabSize: 64, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 32, ropeTheta: 10000, normEps: 1e-6 };
const model = buildLlama(cfg, initLlamaWeights(cfg, 3, 0.2));

test('fed weights: a session fed its large initializers gives the same logits as one holding them', async () => {
  assert.deepEqual(weightsToFeed(model, 'auto'), [], 'a small model keeps its weights in the graph');
  const fedNames = weightsToFeed(model, 'always');
  assert.ok(fedNames.includes('model.embed_tokens.weight') && fedNames.includes('model.layers.1.mlp.down_proj.weight'));
  const ids = [Int32Array.from({ length: 12 }, (_, i) => (i * 7) % cfg.vocabSize)];
  const feeds = tokenFeeds(model, ids);
  const plain = await createSession(model, { threads: 1, feedWeights: 'never' });
  const fed = await createSession(model, { threads: 1, feedWeights: 'always' });
  assert.deepEqual([...fed.inputNames].sort(), Object.keys(feeds).sort(), 'fed weights are not inputs the caller sees');
  const a = (await plain.run(feeds)).logits!.data as Float32Array;
  const b = (await fed.run(feeds)).logits!.data as Float32Array;
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-5 * (1 + Math.abs(a[i]!)), `logit ${i}: ${a[i]} vs ${b[i]}`);
  await plain.release();
  await fed.release();
});

test('--device and --threads are checked; cuda without its provider library is one clear InputError', () => {
  assert.throws(() => checkDeviceFlags('tpu', undefined), (e: Error) => e instanceof InputError && /--device tpu/.test(e.message));
  assert.throws(() => checkDeviceFlags('cpu', -1), (e: Error) => e instanceof InputError && /--threads -1/.test(e.message));
  assert.deepEqual(checkDeviceFlags(undefined, 2), { device: 'cpu', threads: 2 });
  const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
  let installed = true;
  try {
    checkDeviceFlags('cuda', undefined);
  } catch (e) {
    installed = false;
    assert.ok(e instanceof InputError);
    assert.match((e as Error).message, /npm install onnxruntime-node --onnxruntime-node-install=cuda12/);
  }
  // This machine's onnxruntime-node was installed without the CUDA binaries.
  if (cuda && !cuda.bundled) assert.equal(installed, false);
});
