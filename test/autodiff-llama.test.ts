/**
 * A whole built LLaMA (grouped-query attention, rotary, RMSNorm, SwiGLU, causal mask)
 * with the next-token loss: every weight's emitted gradient against central finite
 * differences on randomly chosen coordinates; unsupported ops fail with a clear error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights, llamaWeightSpecs } from '../src/onnx/llama-weights.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { appendLoss } from '../src/onnx/loss.ts';
import { i64 } from '../src/onnx/session.ts';
import { finiteDifferenceCheck, fdMismatches } from '../src/onnx/autodiff/fd-check.ts';
import { buildGradientGraph, gradName } from '../src/onnx/autodiff/grad-graph.ts';
import { makeModel, node, valueInfo, DataType } from '../src/onnx/graph-build.ts';
import { floatTensor } from '../src/onnx/tensor.ts';
import { InputError } from '../src/errors.ts';

const cfg: LlamaConfig = { vocabSize: 17, dim: 8, layers: 2, heads: 4, kvHeads: 2, ffn: 12, maxPositions: 16, ropeTheta: 10000, normEps: 1e-5 };

test('tiny LLaMA: weight gradients of the next-token loss match finite differences', async () => {
  const weights = initLlamaWeights(cfg, 11, 0.3);
  // Non-trivial norm weights, so their gradients are not all alike.
  for (const s of llamaWeightSpecs(cfg)) if (s.kind === 'norm') weights.get(s.name)!.forEach((_, i, a) => (a[i] = 1 + 0.3 * Math.sin(i + s.name.length)));
  const model = appendLoss(buildLlama(cfg, weights));
  const B = 2, T = 5;
  const ids = [3, 16, 0, 7, 7, 1, 2, 9, 14, 5];
  const feeds = {
    input_ids: i64(ids, [B, T]),
    attention_mask: i64(new Array(B * T).fill(1), [B, T]),
    position_ids: i64(Array.from({ length: B * T }, (_, i) => i % T), [B, T]),
  };
  const wrt = llamaWeightSpecs(cfg).map((s) => s.name);
  const pts = await finiteDifferenceCheck(model, { loss: 'loss', wrt, feeds, eps: 1e-2, coords: 6, seed: 'llama' });
  assert.equal(pts.length, wrt.length * 6);
  const bad = fdMismatches(pts, 3e-2, 3e-3);
  assert.deepEqual(bad, [], JSON.stringify(bad.slice(0, 5)));
  // Every tensor gets a real gradient (no silently-zero paths).
  for (const w of wrt) assert.ok(pts.some((p) => p.tensor === w && Math.abs(p.analytic) > 1e-4), `${w}: gradient vanished`);
});

test('an op without a gradient rule on the path is named in an InputError', async () => {
  const m = makeModel({
    name: 'x',
    node: [node('LpNormalization', ['w'], ['n'], 'my_lp_node'), node('ReduceSum', ['n'], ['loss'], undefined, { keepdims: 0 })],
    initializer: [floatTensor('w', [2, 3], new Float32Array([1, 2, 3, 4, 5, 6]))],
    output: [valueInfo('loss', DataType.FLOAT, [])],
  });
  await assert.rejects(buildGradientGraph(m, { loss: 'loss', wrt: ['w'] }),
    (e: unknown) => e instanceof InputError && /LpNormalization/.test(e.message) && /my_lp_node/.test(e.message));
});

test('an unsupported op off the gradient path is fine, and an unreached weight gets zeros', async () => {
  const m = makeModel({
    name: 'x',
    node: [
      node('LpNormalization', ['c'], ['cn']),
      node('Mul', ['w', 'cn'], ['p']),
      node('ReduceSum', ['p'], ['loss'], undefined, { keepdims: 0 }),
      node('Mul', ['u', 'u'], ['other']),
    ],
    initializer: [
      floatTensor('w', [3], new Float32Array([1, 2, 3])),
      floatTensor('c', [3], new Float32Array([3, 0, 4])),
      floatTensor('u', [2], new Float32Array([1, 1])),
    ],
    output: [valueInfo('loss', DataType.FLOAT, []), valueInfo('other', DataType.FLOAT, [2])],
  });
  const g = await buildGradientGraph(m, { loss: 'loss', wrt: ['w', 'u'] });
  const { createSession } = await import('../src/onnx/session.ts');
  const s = await createSession(g, { threads: 1 });
  const r = await s.run({});
  assert.deepEqual(Array.from(r[gradName('w')]!.data as Float32Array).map((v) => +v.toFixed(5)), [0.6, 0, 0.8]);
  assert.deepEqual(Array.from(r[gradName('u')]!.data as Float32Array), [0, 0]);
  await s.release();
});

test('bad requests: unknown loss or weight, non-scalar loss', async () => {
  const m = makeModel({
    name: 'x',
    node: [node('Mul', ['w', 'w'], ['sq'])],
    initializer: [floatTensor('w', [3], new Float32Array([1, 2, 3]))],
    output: [valueInfo('sq', DataType.FLOAT, [3])],
  });
  await assert.rejects(buildGradientGraph(m, { loss: 'nope', wrt: ['w'] }), (e: unknown) => e instanceof InputError && /'nope'/.test(e.message));
  await assert.rejects(buildGradientGraph(m, { loss: 'sq', wrt: ['zz'] }), (e: unknown) => e instanceof InputError && /'zz'/.test(e.message));
  await assert.rejects(buildGradientGraph(m, { loss: 'sq', wrt: ['w'] }), (e: unknown) => e instanceof InputError && /scalar/.test(e.message));
});
