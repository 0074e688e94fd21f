import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { HessianAccumulator, lazyUpdateJs, markSmallest, sparseGpt, sparseGptPrepared, type SparseGptOptions } from '../src/prune/sparsegpt.ts';
import { lazyUpdateOrt, ORT_LAZY_MIN_COLS } from '../src/prune/sparsegpt-ort.ts';
import { closeSparseGptThreads, sparseGptThreaded, threadsForLayer } from '../src/prune/sparsegpt-threads.ts';

// Registered before any thread starts, so a failed assertion cannot leave them running.
after(() => closeSparseGptThreads());

/** Gram matrix Σ x xᵀ of `tokens` random inputs with correlated channels; `dead` inputs never active. */
function randomGram(cols: number, tokens: number, seed: string, dead: number[]): Float64Array {
  const rng = seedrandom(seed);
  const x = new Float64Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    const common = rng() - 0.5;
    for (let j = 0; j < cols; j++) x[t * cols + j] = dead.includes(j) ? 0 : (rng() - 0.5 + common * (j % 3)) * (0.2 + (j % 7));
  }
  const g = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) {
    const o = t * cols;
    for (let i = 0; i < cols; i++) {
      const xi = x[o + i]!;
      if (xi === 0) continue;
      const gi = i * cols;
      for (let j = 0; j < cols; j++) g[gi + j] += xi * x[o + j]!;
    }
  }
  return g;
}

function accumulator(cols: number, tokens: number, seed: string, dead: number[]): HessianAccumulator {
  const acc = new HessianAccumulator(cols);
  acc.add(randomGram(cols, tokens, seed, dead), 4);
  return acc;
}

const weights = (n: number, seed: string) => {
  const rng = seedrandom(seed);
  return Float32Array.from({ length: n }, () => rng() * 2 - 1);
};

/** Bit-for-bit equality of the weights, the masks and the loss. */
function assertSame(got: { w: Float32Array; mask: Uint8Array; loss: number }, ref: { w: Float32Array; mask: Uint8Array; loss: number }, label: string): void {
  assert.ok(Buffer.from(got.w.buffer).equals(Buffer.from(ref.w.buffer)), `${label}: weights differ`);
  assert.ok(Buffer.from(got.mask).equals(Buffer.from(ref.mask)), `${label}: masks differ`);
  assert.equal(got.loss, ref.loss, `${label}: loss`);
}

const patterns: Array<[string, SparseGptOptions]> = [
  ['unstructured 50%', { sparsity: 0.5 }],
  ['unstructured 70%, blocks of 32', { sparsity: 0.7, blockSize: 32 }],
  ['2:4', { sparsity: 0.5, n: 2, m: 4 }],
  ['4:8', { sparsity: 0.5, n: 4, m: 8 }],
];

for (const [label, opts] of patterns) {
  test(`SparseGPT on threads equals the single-thread loop bit for bit (float64 updates, ${label}, dead inputs, uneven row split)`, async () => {
    const rows = 203;
    const cols = 150; // one full block of 128 and a partial one
    const dead = [0, 7, 149];
    const acc = accumulator(cols, 260, `g-${label}`, dead);
    const w0 = weights(rows * cols, `w-${label}`);
    const ref = Float32Array.from(w0);
    const r = sparseGpt(ref, rows, cols, acc.hessian(), opts);
    // Two layers at once (they take turns on the threads and their shared memory; each keeps its own mask).
    const ws = [2, 3].map(() => Float32Array.from(w0));
    const ts = await Promise.all([2, 3].map((threads, k) => sparseGptThreaded(ws[k]!, rows, acc.prepared(), opts, { threads, lazy: 'js' })));
    ts.forEach((t, k) => assertSame({ w: ws[k]!, mask: t.mask, loss: t.loss }, { w: ref, mask: r.mask, loss: r.loss }, `${k + 2} threads`));
    for (const j of dead) for (let row = 0; row < rows; row++) assert.equal(ref[row * cols + j], 0, 'dead input zeroed');
  });
}

test('SparseGPT on threads, wide layer: with the float32 onnxruntime update and with the float64 one, the single-thread result bit for bit', async () => {
  const rows = 160;
  const cols = ORT_LAZY_MIN_COLS + 100;
  const dead = [3, cols - 1];
  const acc = accumulator(cols, 200, 'wide', dead);
  const prep = acc.prepared();
  const w0 = weights(rows * cols, 'wide-w');
  for (const [label, opts] of [['unstructured', { sparsity: 0.6 }], ['2:4', { sparsity: 0.5, n: 2, m: 4 }]] as const) {
    for (const [lazy, fn] of [['ort', lazyUpdateOrt], ['js', lazyUpdateJs]] as const) {
      const ref = Float32Array.from(w0);
      const r = await sparseGptPrepared(ref, rows, prep, opts, fn);
      const w = Float32Array.from(w0);
      const t = await sparseGptThreaded(w, rows, prep, opts, { threads: 2, lazy });
      assertSame({ w, mask: t.mask, loss: t.loss }, { w: ref, mask: r.mask, loss: r.loss }, `${label}, ${lazy} updates`);
      assert.ok(r.mask.reduce((s, v) => s + v, 0) >= rows * (cols - dead.length) * 0.5, `${label}: pruned as asked`);
    }
  }
});

test('SparseGPT threads: a failure in a thread is reported, and the next layer runs on fresh threads', async () => {
  const rows = 130;
  const cols = 40;
  const acc = accumulator(cols, 80, 'fail', []);
  const H = acc.hessian();
  // A block size that is not a multiple of M is refused inside the threads' loop.
  await assert.rejects(sparseGptThreaded(Float32Array.from(weights(rows * cols, 'f')), rows, acc.prepared(), { sparsity: 0.5, n: 2, m: 3, blockSize: 16 }, { threads: 2, lazy: 'js' }), /not a multiple of M=3/);
  const ref = Float32Array.from(weights(rows * cols, 'f'));
  const r = sparseGpt(ref, rows, cols, H, { sparsity: 0.5 });
  const w = Float32Array.from(weights(rows * cols, 'f'));
  const t = await sparseGptThreaded(w, rows, acc.prepared(), { sparsity: 0.5 }, { threads: 2, lazy: 'js' });
  assertSame({ w, mask: t.mask, loss: t.loss }, { w: ref, mask: r.mask, loss: r.loss }, 'after the failure');
});

test('SparseGPT threads: small layers stay in the calling thread, large ones are split by --threads', () => {
  assert.equal(threadsForLayer(688, 256, 2), 1, "the bundled model's layers");
  assert.equal(threadsForLayer(2048, 5632, 2), 2);
  assert.equal(threadsForLayer(2048, 5632, 1), 1, '--threads 1');
  assert.equal(threadsForLayer(100, 5632, 4), 1, 'too few rows to split');
  assert.equal(threadsForLayer(256, 2048, 8), 4, 'at least 64 rows a thread');
});

test('mask choice: the k smallest with ties to the lower index, as a sort of (value, index) gives', () => {
  const rng = seedrandom('ties');
  const sorted = new Float64Array(128);
  for (let trial = 0; trial < 400; trial++) {
    const len = [4, 8, 37, 128][trial % 4]!;
    const from = 5;
    // Few distinct values, so ties are everywhere.
    const v = Float64Array.from({ length: from + len + 3 }, () => Math.floor(rng() * 6) / 4);
    const k = Math.floor(rng() * (len + 1));
    const want = new Uint8Array(v.length + 10);
    const idx = Array.from({ length: len }, (_, i) => from + i).sort((a, b) => v[a]! - v[b]! || a - b);
    for (const j of idx.slice(0, k)) want[j + 10] = 1;
    const got = new Uint8Array(v.length + 10);
    markSmallest(v, from, len, k, sorted, got, 10);
    assert.deepEqual(got, want, `len ${len}, k ${k}`);
  }
});
