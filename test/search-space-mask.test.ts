// Masks against a plain sort-based reference (stable by index, NaN above +inf, -0 == +0),
// on data with many ties, NaN, infinities and signed zeros.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { InputError } from '../src/errors.ts';
import { nmMask, unstructuredMask } from '../src/search-space/index.ts';

/** Compare as the masks promise: NaN is the largest value; equal values keep index order. */
function cmp(a: number, b: number): number {
  const an = Number.isNaN(a);
  const bn = Number.isNaN(b);
  if (an || bn) return an === bn ? 0 : an ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function referenceRows(scores: Float32Array, rows: number, cols: number, k: number): Uint8Array {
  const mask = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const idx = Array.from({ length: cols }, (_, j) => j);
    idx.sort((i, j) => cmp(scores[r * cols + i]!, scores[r * cols + j]!) || i - j);
    for (let t = 0; t < k; t++) mask[r * cols + idx[t]!] = 1;
  }
  return mask;
}

function referenceNM(scores: Float32Array, rows: number, cols: number, n: number, m: number): Uint8Array {
  const mask = new Uint8Array(rows * cols);
  for (let g = 0; g < rows * cols; g += m) {
    const idx = Array.from({ length: m }, (_, t) => t);
    idx.sort((i, j) => cmp(scores[g + i]!, scores[g + j]!) || i - j);
    for (let t = 0; t < n; t++) mask[g + idx[t]!] = 1;
  }
  return mask;
}

/** Scores drawn to collide: small integer grid, +-0, +-inf, NaN, and a spread of magnitudes. */
function nastyScores(seed: string, n: number): Float32Array {
  const rng = seedrandom(seed);
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rng();
    if (u < 0.05) s[i] = NaN;
    else if (u < 0.08) s[i] = Infinity;
    else if (u < 0.1) s[i] = -Infinity;
    else if (u < 0.15) s[i] = rng() < 0.5 ? 0 : -0;
    else if (u < 0.5) s[i] = Math.floor(rng() * 5) - 2;
    else s[i] = (rng() - 0.5) * 10 ** Math.floor(rng() * 20 - 10);
  }
  return s;
}

test('unstructured masks equal the stable-sort reference, including ties, NaN, inf and -0', () => {
  for (const [rows, cols] of [
    [1, 1],
    [3, 7],
    [16, 64],
    [5, 300],
    [2, 1000],
  ] as const) {
    const s = nastyScores(`u${rows}x${cols}`, rows * cols);
    for (const sparsity of [0, 0.1, 0.5, 0.5001, 0.9, 1]) {
      const k = Math.floor(cols * sparsity);
      const got = unstructuredMask(s, rows, cols, sparsity);
      assert.deepEqual(got.mask, referenceRows(s, rows, cols, k), `${rows}x${cols} at ${sparsity}`);
      assert.equal(got.pruned, rows * k);
      assert.equal(got.nanCount, s.filter(Number.isNaN).length);
      for (let r = 0; r < rows; r++) {
        let c = 0;
        for (let j = 0; j < cols; j++) c += got.mask[r * cols + j]!;
        assert.equal(c, k, `row ${r} prunes exactly floor(cols * s)`);
      }
    }
  }
});

test('unstructured masks on smooth data and on all-equal rows', () => {
  const rng = seedrandom('smooth');
  const rows = 8;
  const cols = 513;
  const s = new Float32Array(rows * cols).map(() => rng() * 1e-3);
  assert.deepEqual(unstructuredMask(s, rows, cols, 0.5).mask, referenceRows(s, rows, cols, 256));
  // All equal: the first k columns of every row go.
  const flat = new Float32Array(rows * cols).fill(0.25);
  const m = unstructuredMask(flat, rows, cols, 0.5).mask;
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) assert.equal(m[r * cols + j], j < 256 ? 1 : 0);
});

test('hand-worked unstructured example', () => {
  // row 0: [3, 1, 2, 1] -> prune the two lowest: indices 1 and 3 (tie of 1s, both pruned)
  // row 1: [NaN, 0, -0, 5] -> 0 and -0 are equal: prune indices 1 and 2
  const s = new Float32Array([3, 1, 2, 1, NaN, 0, -0, 5]);
  const r = unstructuredMask(s, 2, 4, 0.5);
  assert.deepEqual(Array.from(r.mask), [0, 1, 0, 1, 0, 1, 1, 0]);
  assert.equal(r.nanCount, 1);
  // 75%: row 0 prunes 1, 1, 2; row 1 prunes 0, -0, 5 and keeps the NaN
  assert.deepEqual(Array.from(unstructuredMask(s, 2, 4, 0.75).mask), [0, 1, 1, 1, 0, 1, 1, 1]);
  // 25% with a tie: the lower index goes first
  assert.deepEqual(Array.from(unstructuredMask(s, 2, 4, 0.25).mask), [0, 1, 0, 0, 0, 1, 0, 0]);
});

test('N:M masks equal the reference; hand-worked 2:4', () => {
  const s = new Float32Array([4, 3, 2, 1, 1, 1, 1, 1, NaN, 2, -1, 2]);
  const r = nmMask(s, 1, 12, 2, 4);
  assert.deepEqual(Array.from(r.mask), [0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0]);
  assert.equal(r.nanCount, 1);
  assert.equal(r.pruned, 6);
  for (const [n, m] of [
    [2, 4],
    [4, 8],
    [1, 2],
    [0, 4],
    [4, 4],
    [3, 16],
  ] as const) {
    const rows = 6;
    const cols = 64;
    const sc = nastyScores(`nm${n}:${m}`, rows * cols);
    const got = nmMask(sc, rows, cols, n, m);
    assert.deepEqual(got.mask, referenceNM(sc, rows, cols, n, m), `${n}:${m}`);
    assert.equal(got.pruned, (rows * cols * n) / m);
  }
});

test('bad mask arguments are InputErrors', () => {
  const s = new Float32Array(8);
  const cases: [() => unknown, RegExp][] = [
    [() => unstructuredMask(s, 2, 4, 1.5), /sparsity must be in \[0, 1\]/],
    [() => unstructuredMask(s, 2, 4, NaN), /sparsity/],
    [() => unstructuredMask(s, 3, 4, 0.5), /12 values, got 8/],
    [() => nmMask(s, 2, 4, 3, 2), /0 <= N <= M/],
    [() => nmMask(s, 1, 8, 2, 3), /not a multiple of M = 3/],
  ];
  for (const [f, re] of cases) assert.throws(f, (e: unknown) => e instanceof InputError && re.test(e.message));
});
