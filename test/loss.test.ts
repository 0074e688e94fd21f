/** The appended next-token loss against a plain JS cross-entropy over the model's own logits. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { appendLoss } from '../src/onnx/loss.ts';
import { createSession, i64 } from '../src/onnx/session.ts';
import { InputError } from '../src/errors.ts';
import { makeModel, node, valueInfo, DataType } from '../src/onnx/graph-build.ts';

const cfg: LlamaConfig = { vocabSize: 13, dim: 8, layers: 1, heads: 2, kvHeads: 2, ffn: 12, maxPositions: 16, ropeTheta: 10000, normEps: 1e-5 };

function feeds(ids: number[], B: number, T: number) {
  return {
    input_ids: i64(ids, [B, T]),
    attention_mask: i64(new Array(B * T).fill(1), [B, T]),
    position_ids: i64(Array.from({ length: B * T }, (_, i) => i % T), [B, T]),
  };
}

test('appended loss equals the mean next-token cross-entropy of the logits', async () => {
  // Larger weights than the default init so the logits are far from uniform.
  const model = appendLoss(buildLlama(cfg, initLlamaWeights(cfg, 3, 0.5)), { perSequence: true });
  const B = 2, T = 6;
  const ids = [1, 5, 7, 2, 12, 0, 3, 3, 9, 11, 4, 6];
  const s = await createSession(model, { threads: 1 });
  const r = await s.run(feeds(ids, B, T));
  const logits = r.logits!.data as Float32Array;
  const V = cfg.vocabSize;
  const perSeq: number[] = [];
  let total = 0;
  for (let b = 0; b < B; b++) {
    let seq = 0;
    for (let t = 0; t < T - 1; t++) {
      const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
      seq += lse - row[ids[b * T + t + 1]!]!;
    }
    perSeq.push(seq / (T - 1));
    total += seq;
  }
  const loss = (r.loss!.data as Float32Array)[0]!;
  assert.ok(Math.abs(loss - total / (B * (T - 1))) < 1e-5, `loss ${loss} vs ${total / (B * (T - 1))}`);
  assert.ok(Math.abs(loss - Math.log(V)) > 0.05, 'logits should not be uniform in this test');
  const ps = r.loss_per_sequence!.data as Float32Array;
  perSeq.forEach((v, i) => assert.ok(Math.abs(ps[i]! - v) < 1e-5));
  await s.release();
});

test('sum-of-sequence-means reduction adds the per-window means', async () => {
  const model = appendLoss(buildLlama(cfg, initLlamaWeights(cfg, 4, 0.5)), { reduction: 'sum-of-sequence-means', perSequence: true });
  const s = await createSession(model, { threads: 1 });
  const r = await s.run(feeds([1, 2, 3, 4, 5, 6, 7, 8], 2, 4));
  const ps = r.loss_per_sequence!.data as Float32Array;
  assert.ok(Math.abs((r.loss!.data as Float32Array)[0]! - (ps[0]! + ps[1]!)) < 1e-5);
  await s.release();
});

test('a model without logits is refused with a clear InputError', () => {
  const m = makeModel({
    name: 'x',
    node: [node('Identity', ['input_ids'], ['out'])],
    input: [valueInfo('input_ids', DataType.INT64, [1, 4])],
    output: [valueInfo('out', DataType.INT64, [1, 4])],
  });
  assert.throws(() => appendLoss(m), (e: unknown) => e instanceof InputError && /no 'logits' output/.test(e.message));
});
