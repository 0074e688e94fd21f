import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { cloneModel } from '../src/onnx/graph-edit.ts';
import { discoverLayers, readLayerWeight } from '../src/prune/discover.ts';
import { baselineMethod } from '../src/prune/baselines.ts';
import { denseX, pruneModel } from '../src/prune/prune-model.ts';
import { parsePattern } from '../src/prune/score.ts';
import { outlierRatio, owlAllocation, owlSparsities, parseAllocation, spreadSparsity, wandaScores } from '../src/prune/allocation.ts';
import { InputError } from '../src/errors.ts';

const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test('outlier ratio: share strictly above M x mean over all layers of the block', () => {
  // mean of [1,1,1,1,10 | 2,2,2] = 20/8 = 2.5; M = 2 -> threshold 5: only the 10 is above.
  close(outlierRatio([Float32Array.of(1, 1, 1, 1, 10), Float32Array.of(2, 2, 2)], 2), 1 / 8);
  // M = 0.8 -> threshold 2: 10 only (2 is not strictly above).
  close(outlierRatio([Float32Array.of(1, 1, 1, 1, 10), Float32Array.of(2, 2, 2)], 0.8), 1 / 8);
  // M = 0.5 -> threshold 1.25: 10 and the three 2s.
  close(outlierRatio([Float32Array.of(1, 1, 1, 1, 10), Float32Array.of(2, 2, 2)], 0.5), 4 / 8);
});

test('OWL sparsities, hand-worked: D = [0.1, 0.3, 0.2, 0], s = 0.7, lambda = 0.08', () => {
  // min-max: [1/3, 1, 2/3, 0]; x 2 lambda = [0.05333, 0.16, 0.10667, 0]; mean 0.08;
  // keep = k - 0.08 + 0.3 = [0.27333, 0.38, 0.32667, 0.22]; sparsity = 1 - keep.
  const s = owlSparsities([0.1, 0.3, 0.2, 0], 0.7, 0.08);
  const want = [1 - (0.16 / 3 + 0.22), 0.62, 1 - ((2 * 0.16) / 3 + 0.22), 0.78];
  s.forEach((v, i) => close(v, want[i]!, 1e-12));
  close(s.reduce((a, b) => a + b, 0) / s.length, 0.7, 1e-12); // mean exact
  close(Math.max(...s) - Math.min(...s), 0.16, 1e-12); // spread exactly 2 lambda
  for (const v of s) assert.ok(v >= 0.7 - 0.16 && v <= 0.7 + 0.16); // bounds
  // More outliers, less pruning.
  assert.ok(s[1]! < s[2]! && s[2]! < s[0]! && s[0]! < s[3]!);
});

test('OWL: equal outlier ratios or lambda 0 give the uniform allocation; out-of-range refused', () => {
  assert.deepEqual(owlSparsities([0.2, 0.2, 0.2], 0.5, 0.08), [0.5, 0.5, 0.5]);
  assert.deepEqual(owlSparsities([0.1, 0.2], 0.5, 0), [0.5, 0.5]);
  // s = 0.95, lambda = 0.08: a block would be pruned above 1.
  assert.throws(() => spreadSparsity([0, 1], 0.95, 0.08), InputError);
  assert.throws(() => parseAllocation('owls'), InputError);
  assert.throws(() => parseAllocation('owl', 0), InputError);
  assert.throws(() => parseAllocation('owl', 5, -0.1), InputError);
  assert.deepEqual(parseAllocation('owl'), { kind: 'owl', m: 5, lambda: 0.08 });
});

test('wanda scores = |W| sqrt(X_j)', () => {
  const s = wandaScores(Float32Array.of(-1, 2, 3, -4), 2, 2, Float32Array.of(4, 9));
  assert.deepEqual([...s], [2, 6, 6, 12]);
});

const cfg = { vocabSize: 96, dim: 32, layers: 4, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
const dense = buildLlama(cfg, initLlamaWeights(cfg, 7, 0.15));
const layers = discoverLayers(dense);
const rng = seedrandom('owl');
const calib = Array.from({ length: 8 }, () => Int32Array.from({ length: 16 }, () => Math.floor(rng() * cfg.vocabSize)));

test('prune with OWL: each block pruned at its own sparsity, from an independent recomputation; overall sparsity kept', async () => {
  const X = await denseX(dense, layers, calib, { threads: 1 });
  // Independent: per block, concatenate the Wanda scores by hand and count.
  const ratios = [0, 1, 2, 3].map((b) => {
    const all: number[] = [];
    for (const l of layers.filter((x) => x.block === b)) {
      const w = readLayerWeight(dense, l);
      const x = X.get(l.name)!;
      for (let r = 0; r < l.out; r++) for (let j = 0; j < l.in; j++) all.push(Math.abs(w[r * l.in + j]!) * Math.sqrt(x[j]!));
    }
    const mean = all.reduce((a, v) => a + v, 0) / all.length;
    return all.filter((v) => v > 5 * mean).length / all.length;
  });
  const want = owlSparsities(ratios, 0.6, 0.08);
  const r0 = owlAllocation(layers, (l) => readLayerWeight(dense, l), (l) => X.get(l.name)!, { sparsity: 0.6, m: 5, lambda: 0.08 });
  r0.ratios.forEach((v, i) => close(v, ratios[i]!, 1e-9));

  const model = cloneModel(dense);
  const res = await pruneModel(model, { method: baselineMethod('wanda'), sparsity: 0.6, pattern: parsePattern('unstructured', 0.6), allocation: { kind: 'owl', m: 5, lambda: 0.08 }, windows: calib, threads: 1 });
  assert.equal(res.allocation.blocks.length, 4);
  assert.ok(new Set(want.map((v) => v.toFixed(6))).size > 1, 'the tiny model has unequal outlier ratios');
  for (const l of res.layers) {
    // Per output row, floor(in * s_b) weights pruned.
    const perRow = Math.floor(l.in * want[l.block]!);
    assert.equal(l.pruned, perRow * l.out, l.name);
  }
  // Blocks are equal in size: overall sparsity is the mean of the block sparsities, within per-row rounding.
  assert.ok(Math.abs(res.overall.sparsity - 0.6) < 1 / 32 + 1e-9, `${res.overall.sparsity}`);
  await assert.rejects(
    pruneModel(cloneModel(dense), { method: baselineMethod('wanda'), sparsity: 0.5, pattern: parsePattern('2:4', 0.5), allocation: { kind: 'owl', m: 5, lambda: 0.08 }, windows: calib, threads: 1 }),
    InputError,
  );
});
