/**
 * G block by block (stream-gradients.ts) against G of the whole model's gradient graph
 * (gradients.ts, itself checked by finite differences in gradients.test.ts) on tiny
 * LLaMAs built on the spot: several blocks, grouped-query attention, tied embeddings,
 * a float16 model and a Hugging Face folder read tensor by tensor; held in memory or
 * parked in a scratch file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import seedrandom from 'seedrandom';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { memorySource } from '../src/onnx/weight-source.ts';
import { DataType, type ModelProto } from '../src/onnx/proto.ts';
import { floatTensor, tensorDims, tensorToFloat32 } from '../src/onnx/tensor.ts';
import { computeGradientNorms } from '../src/prune/gradients.ts';
import { scratchGradientKey, streamedGradientNorms, streamedGradientNormsToScratch } from '../src/prune/stream-gradients.ts';
import { ScratchFloats } from '../src/prune/scratch-floats.ts';
import { discoverLayers } from '../src/prune/discover.ts';
import { resolveModel } from '../src/model/load.ts';
import { denseGradients } from '../src/prune/prune-model.ts';
import { openModelSource } from '../src/model/source.ts';
import { livelyWeights, makeCheckpoint } from './support/hf-checkpoint.ts';

const cfg: LlamaConfig = { vocabSize: 37, dim: 16, layers: 3, heads: 4, kvHeads: 2, ffn: 24, maxPositions: 32, ropeTheta: 10000, normEps: 1e-5 };

function windowsOf(n: number, t: number, vocab: number, seed: string): Int32Array[] {
  const rng = seedrandom(seed);
  return Array.from({ length: n }, () => Int32Array.from({ length: t }, () => Math.floor(rng() * vocab)));
}

/**
 * Largest |streamed - whole| over a layer relative to the layer's largest G: G is a
 * root-sum-square of float32 gradients computed by the same chain rule in two
 * different graphs, so they differ by float32 rounding only.
 */
const TOL = 1e-5;
function assertSameG(streamed: Map<string, Float32Array>, whole: Map<string, Float32Array>): void {
  assert.deepEqual([...streamed.keys()].sort(), [...whole.keys()].sort());
  for (const [name, w] of whole) {
    const s = streamed.get(name)!;
    assert.equal(s.length, w.length, name);
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < w.length; i++) {
      scale = Math.max(scale, Math.abs(w[i]!));
      diff = Math.max(diff, Math.abs(s[i]! - w[i]!));
    }
    assert.ok(scale > 0, `${name}: G is all zero`);
    assert.ok(diff <= TOL * scale, `${name}: streamed G differs by ${diff} (largest G ${scale})`);
  }
}

for (const [label, c] of [
  ['grouped-query attention', cfg],
  ['tied embeddings', { ...cfg, kvHeads: 4, tieWordEmbeddings: true }],
] as const) {
  test(`streamed G equals the whole model's G: 3 blocks, ${label}`, async () => {
    const model = buildLlama(c, livelyWeights(c, 3));
    const layers = discoverLayers(model);
    assert.equal(new Set(layers.map((l) => l.block)).size, 3);
    const windows = windowsOf(4, 9, c.vocabSize, label);
    const whole = await computeGradientNorms(model, layers, windows, { threads: 1 });
    const steps: Array<[number, number]> = [];
    const streamed = await streamedGradientNorms(memorySource(model), layers, windows, { threads: 1, onProgress: (d, t) => steps.push([d, t]) });
    assertSameG(streamed, whole);
    // The same with G and the blocks' hidden states parked in a scratch file.
    const scratch = ScratchFloats.open();
    try {
      await streamedGradientNormsToScratch(memorySource(model), layers, windows, scratch, { threads: 1 });
      assertSameG(new Map(layers.map((l) => [l.name, scratch.get(scratchGradientKey(l.name))])), whole);
      const gFloats = layers.reduce((a, l) => a + l.out * l.in, 0);
      // G, plus the inputs of blocks 1 and 2 and of the tail (4 windows x 9 tokens x 16 each).
      assert.equal(scratch.bytes, 4 * (gFloats + 3 * 4 * 9 * c.dim));
    } finally {
      scratch.close();
    }
    // Progress: forward through the prelude and 3 blocks, backward through the tail and 3 blocks, per window.
    const total = (1 + 3 + 1 + 3) * windows.length;
    assert.deepEqual(steps, Array.from({ length: total }, (_, i) => [i + 1, total]));
  });
}

/** The model with every float initializer stored as float16. */
function toFloat16(model: ModelProto): ModelProto {
  const init = model.graph!.initializer!.map((t) => (t.dataType === DataType.FLOAT ? { ...floatTensor(t.name!, tensorDims(t), tensorToFloat32(t), DataType.FLOAT16), name: t.name } : t));
  return { ...model, graph: { ...model.graph!, initializer: init } } as ModelProto;
}

test('streamed G with torch-generated weight names (onnx::MatMul_N), the embedding and the head as pruned layers (prelude and tail)', async () => {
  const model = buildLlama(cfg, livelyWeights(cfg, 6), { weightNames: 'torch-generated' });
  // With the embedding, the prelude is differentiated too: the rotary tables and mask it
  // gives every block get the sum of the blocks' gradients.
  const layers = discoverLayers(model, { includeHead: true, includeEmbeddings: true });
  assert.deepEqual(layers.filter((l) => l.block === -1).map((l) => l.name).sort(), ['lm_head', 'model.embed_tokens']);
  assert.ok(layers.every((l) => l.block === -1 || /^onnx::MatMul_\d+$/.test(l.initializer)));
  const windows = windowsOf(3, 8, cfg.vocabSize, 'torch');
  assertSameG(await streamedGradientNorms(memorySource(model), layers, windows, { threads: 1 }), await computeGradientNorms(model, layers, windows, { threads: 1 }));
});

test('streamed G of a float16 model equals the whole model G (both computed in float32)', async () => {
  const model = toFloat16(buildLlama(cfg, initLlamaWeights(cfg, 7, 0.3)));
  const layers = discoverLayers(model);
  assert.equal(layers[0]!.dataType, DataType.FLOAT16);
  const windows = windowsOf(3, 8, cfg.vocabSize, 'f16');
  assertSameG(await streamedGradientNorms(memorySource(model), layers, windows, { threads: 1 }), await computeGradientNorms(model, layers, windows, { threads: 1 }));
});

test('streamed G of a Hugging Face folder read tensor by tensor equals the whole model G', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-stream-g-'));
  try {
    await makeCheckpoint(dir, cfg, { dtype: 'BF16', seed: 4 });
    const source = await openModelSource(resolveModel(dir));
    try {
      const layers = discoverLayers(source.model);
      const windows = windowsOf(3, 8, cfg.vocabSize, 'hf');
      const streamed = await streamedGradientNorms(source, layers, windows, { threads: 1 });
      const whole = await computeGradientNorms((await source.loadAll()).model, layers, windows, { threads: 1 });
      assertSameG(streamed, whole);
    } finally {
      await source.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('denseGradients (search, baselines) goes block by block when the whole gradient graph exceeds its budget', async () => {
  const model = buildLlama(cfg, livelyWeights(cfg, 5));
  const layers = discoverLayers(model);
  const windows = windowsOf(2, 8, cfg.vocabSize, 'dense');
  const totals = new Set<number>();
  const whole = await denseGradients(model, layers, windows, { threads: 1, onBatch: (_, t) => totals.add(t) });
  assert.deepEqual([...totals], [2]); // one whole-model run per window
  totals.clear();
  const streamed = await denseGradients(model, layers, windows, { threads: 1, maxMemory: 1, onBatch: (_, t) => totals.add(t) });
  assert.deepEqual([...totals], [(1 + 3 + 1 + 3) * 2]); // forward through prelude and blocks, backward through tail and blocks
  assertSameG(streamed, whole);
});
