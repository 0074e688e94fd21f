/**
 * G = 100*sqrt(sum_n g_n^2) against per-window central finite differences of the
 * next-token loss on a tiny LLaMA, in PyTorch [out, in] layout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights, llamaWeightSpecs } from '../src/onnx/llama-weights.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { appendLoss } from '../src/onnx/loss.ts';
import { createSession, ort } from '../src/onnx/session.ts';
import { withInputs } from '../src/onnx/autodiff/fd-check.ts';
import { computeGradientNorms } from '../src/prune/gradients.ts';
import { tokenFeeds } from '../src/prune/calibration.ts';
import type { PrunableLayer } from '../src/prune/discover.ts';
import { InputError } from '../src/errors.ts';

const cfg: LlamaConfig = { vocabSize: 19, dim: 8, layers: 2, heads: 2, kvHeads: 1, ffn: 12, maxPositions: 16, ropeTheta: 10000, normEps: 1e-5 };

function layersOf(c: LlamaConfig): PrunableLayer[] {
  return llamaWeightSpecs(c).filter((s) => s.kind === 'linear').map((s) => ({
    name: s.name.replace(/\.weight$/, ''),
    nodeName: '',
    opType: 'MatMul' as const,
    initializer: s.name,
    input: '',
    out: s.shape[0],
    in: s.shape[1]!,
    storedTransposed: true,
    block: /layers\.(\d+)/.test(s.name) ? Number(/layers\.(\d+)/.exec(s.name)![1]) : -1,
    dataType: 1,
  }));
}

test('G equals 100*sqrt(sum of squared per-window gradients), checked by finite differences', async () => {
  const weights = initLlamaWeights(cfg, 5, 0.3);
  const model = buildLlama(cfg, weights);
  const layers = layersOf(cfg);
  const rng = seedrandom('windows');
  const windows = Array.from({ length: 3 }, () => Int32Array.from({ length: 6 }, () => Math.floor(rng() * cfg.vocabSize)));
  const G = await computeGradientNorms(model, layers, windows, { threads: 1 });
  assert.equal(G.size, layers.length);

  const fwd = withInputs(appendLoss(model), layers.map((l) => l.initializer));
  fwd.graph!.output = [{ name: 'loss' }];
  const s = await createSession(fwd, { threads: 1 });
  const eps = 1e-2;
  let checked = 0;
  for (const l of layers) {
    const g = G.get(l.name)!;
    assert.equal(g.length, l.out * l.in);
    assert.ok(g.every((v) => v >= 0 && Number.isFinite(v)));
    for (let k = 0; k < 3; k++) {
      const o = Math.floor(rng() * l.out);
      const i = Math.floor(rng() * l.in);
      let sumSq = 0;
      for (const w of windows) {
        const lossAt = async (delta: number) => {
          const feeds: Record<string, ort.Tensor> = { ...tokenFeeds(fwd, [w]) };
          for (const m of layers) {
            const pt = weights.get(m.initializer)!;
            const t = new Float32Array(m.in * m.out); // [in, out]
            for (let a = 0; a < m.out; a++) for (let b = 0; b < m.in; b++) t[b * m.out + a] = pt[a * m.in + b]!;
            if (m === l) t[i * m.out + o]! += delta;
            feeds[m.initializer] = new ort.Tensor('float32', t, [m.in, m.out]);
          }
          const r = await s.run(feeds);
          return (r.loss!.data as Float32Array)[0]!;
        };
        const d = ((await lossAt(eps)) - (await lossAt(-eps))) / (2 * eps);
        sumSq += d * d;
      }
      const expected = 100 * Math.sqrt(sumSq);
      const got = g[o * l.in + i]!;
      assert.ok(Math.abs(got - expected) <= 0.03 * expected + 0.02, `${l.name}[${o},${i}]: G ${got} vs finite differences ${expected}`);
      checked++;
    }
  }
  assert.equal(checked, layers.length * 3);
  await s.release();
});

test('windows of different lengths are refused', async () => {
  const model = buildLlama(cfg, initLlamaWeights(cfg, 1));
  await assert.rejects(computeGradientNorms(model, layersOf(cfg), [new Int32Array(5), new Int32Array(6)]), InputError);
});

test('a float16 model is differentiated in float32: G matches the float32 model with the same rounded weights', async () => {
  const { DataType } = await import('../src/onnx/graph-build.ts');
  const { floatTensor, tensorToFloat32, tensorDims } = await import('../src/onnx/tensor.ts');
  const { onnx } = await import('../src/onnx/proto.ts');
  const model = buildLlama(cfg, initLlamaWeights(cfg, 9, 0.3));
  const half = (t: import('../src/onnx/proto.ts').TensorProto) =>
    t.dataType === DataType.FLOAT ? { ...floatTensor(t.name ?? '', tensorDims(t), tensorToFloat32(t), DataType.FLOAT16), name: t.name } : t;
  const g = model.graph!;
  const fp16 = onnx.ModelProto.create({
    ...model,
    graph: {
      ...g,
      initializer: (g.initializer ?? []).map(half),
      node: (g.node ?? []).map((n) => ({ ...n, attribute: (n.attribute ?? []).map((a) => (a.t ? { ...a, t: half(a.t) } : a)) })),
      output: (g.output ?? []).map((o) => ({ ...o, type: { tensorType: { ...o.type!.tensorType!, elemType: DataType.FLOAT16 } } })),
    },
  });
  // The same weights rounded to half precision, kept in float32.
  const rounded = onnx.ModelProto.create({
    ...model,
    graph: { ...g, initializer: (fp16.graph!.initializer ?? []).map((t) => ({ ...floatTensor(t.name ?? '', tensorDims(t), tensorToFloat32(t)), name: t.name })) },
  });
  const windows = [Int32Array.from([1, 5, 2, 8, 13, 3]), Int32Array.from([0, 18, 7, 7, 2, 11])];
  const layers16 = layersOf(cfg).map((l) => ({ ...l, dataType: DataType.FLOAT16 }));
  const a = await computeGradientNorms(fp16, layers16, windows, { threads: 1 });
  const b = await computeGradientNorms(rounded, layersOf(cfg), windows, { threads: 1 });
  for (const [name, gb] of b) {
    const ga = a.get(name)!;
    let maxDiff = 0, maxVal = 0;
    for (let i = 0; i < gb.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(ga[i]! - gb[i]!)); maxVal = Math.max(maxVal, gb[i]!); }
    assert.ok(maxVal > 0 && maxDiff <= 1e-4 * maxVal, `${name}: max diff ${maxDiff} of ${maxVal}`);
  }
});
