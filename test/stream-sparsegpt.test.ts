import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { HessianAccumulator, lazyUpdateJs, sparseGpt, sparseGptPrepared } from '../src/prune/sparsegpt.ts';
import { lazyUpdateOrt, ORT_LAZY_MIN_COLS } from '../src/prune/sparsegpt-ort.ts';
import { preparedBlocked, upperCholeskyOfInverseBlocked } from '../src/prune/dense-linalg-ort.ts';
import { upperCholeskyOfInverse } from '../src/prune/sparsegpt.ts';

const rows = 24;
const cols = ORT_LAZY_MIN_COLS + 76;
const rng = seedrandom('sgpt-large');
const x = Float64Array.from({ length: (cols + 64) * cols }, () => rng() * 2 - 1);
const tokens = cols + 64;
const gram = new Float64Array(cols * cols);
for (let t = 0; t < tokens; t++) {
  const o = t * cols;
  for (let i = 0; i < cols; i++) {
    const xi = x[o + i]!;
    for (let j = 0; j < cols; j++) gram[i * cols + j] += xi * x[o + j]!;
  }
}
const w0 = Float32Array.from({ length: rows * cols }, () => rng() * 2 - 1);

test('SparseGPT on a wide layer: the float32 onnxruntime lazy update gives the float64 result (masks, weights within 1e-4) and one shared factor serves every layer of an input', async () => {
  const acc = new HessianAccumulator(cols);
  acc.add(gram, 8);
  const ref = Float32Array.from(w0);
  const r = sparseGpt(ref, rows, cols, acc.hessian(), { sparsity: 0.5 });
  const prep = acc.prepared();
  assert.equal(acc.prepared(), prep, 'prepared once per input');
  const viaJs = Float32Array.from(w0);
  const a = await sparseGptPrepared(viaJs, rows, prep, { sparsity: 0.5 }, lazyUpdateJs);
  assert.deepEqual(viaJs, ref, 'the prepared path is the plain one');
  const viaOrt = Float32Array.from(w0);
  const b = await sparseGptPrepared(viaOrt, rows, prep, { sparsity: 0.5 }, lazyUpdateOrt);
  let flips = 0;
  for (let i = 0; i < r.mask.length; i++) flips += r.mask[i] !== b.mask[i] ? 1 : 0;
  assert.ok(flips <= r.mask.length * 1e-3, `${flips} mask entries differ`);
  let maxErr = 0;
  for (let i = 0; i < ref.length; i++) if (!r.mask[i] && !b.mask[i]) maxErr = Math.max(maxErr, Math.abs(viaOrt[i]! - ref[i]!) / (1 + Math.abs(ref[i]!)));
  assert.ok(maxErr < 1e-4, `largest relative difference ${maxErr}`);
  assert.deepEqual(a.mask, r.mask);
});

test('blocked factor of H⁻¹ (onnxruntime products) equals the plain JavaScript one', async () => {
  const n = 600; // over twice the recursion's leaf size (256): two levels of halving before the leaves
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j] = gram[i * cols + j]! + (i === j ? 1 : 0);
  const plain = upperCholeskyOfInverse(Float64Array.from(h), n);
  const blocked = await upperCholeskyOfInverseBlocked(Float64Array.from(h), n);
  let maxRel = 0;
  let scale = 0;
  for (const v of plain) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < plain.length; i++) maxRel = Math.max(maxRel, Math.abs(blocked[i]! - plain[i]!) / scale);
  assert.ok(maxRel < 1e-10, `largest difference ${maxRel} of the largest entry`);
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(blocked[i * n + j], 0);
  const acc = new HessianAccumulator(cols);
  acc.add(gram, 8);
  const H = acc.hessian();
  const a = await preparedBlocked(acc);
  assert.equal(await preparedBlocked(acc), a, 'once per input');
  assert.equal(a.hinv, acc.gram, "the factor is made in the accumulator's own memory");
  assert.throws(() => acc.add(gram, 1), /consumed/);
  const w = Float32Array.from(w0);
  const ref = Float32Array.from(w0);
  const r = sparseGpt(ref, rows, cols, H, { sparsity: 0.5 });
  const b = await sparseGptPrepared(w, rows, a, { sparsity: 0.5 }, lazyUpdateJs);
  let flips = 0;
  for (let i = 0; i < r.mask.length; i++) flips += r.mask[i] !== b.mask[i] ? 1 : 0;
  assert.ok(flips <= r.mask.length * 1e-3, `${flips} mask entries differ`);
});
