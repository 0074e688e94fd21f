import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { HessianAccumulator, choleskyLower, sparseGpt, upperCholeskyOfInverse } from '../src/prune/sparsegpt.ts';

function gaussian(rng: () => number): number {
  const u = Math.max(rng(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/** Calibration inputs X [tokens, cols] with correlated channels of different scales. */
function makeInputs(tokens: number, cols: number, seed: string, dead: number[] = []): Float64Array {
  const rng = seedrandom(seed);
  const mix = Array.from({ length: cols * cols }, () => gaussian(rng) * 0.3);
  const scale = Array.from({ length: cols }, () => 0.2 + 2 * rng());
  const x = new Float64Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    const z = Array.from({ length: cols }, () => gaussian(rng));
    for (let j = 0; j < cols; j++) {
      let v = z[j]!;
      for (let k = 0; k < cols; k++) v += mix[j * cols + k]! * z[k]!;
      x[t * cols + j] = dead.includes(j) ? 0 : v * scale[j]!;
    }
  }
  return x;
}

function gram(x: Float64Array, tokens: number, cols: number): Float64Array {
  const g = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) g[i * cols + j] += x[t * cols + i]! * x[t * cols + j]!;
  return g;
}

function randomWeights(rows: number, cols: number, seed: string): Float32Array {
  const rng = seedrandom(seed);
  return Float32Array.from({ length: rows * cols }, () => gaussian(rng));
}

/** ‖X Wᵀ − X Ŵᵀ‖²_F */
function reconError(x: Float64Array, tokens: number, cols: number, w: ArrayLike<number>, wh: ArrayLike<number>, rows: number): number {
  let s = 0;
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let d = 0;
      for (let j = 0; j < cols; j++) d += x[t * cols + j]! * (w[r * cols + j]! - wh[r * cols + j]!);
      s += d * d;
    }
  }
  return s;
}

/** Plain Gauss-Jordan inverse of a [n,n] matrix. */
function inverse(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]!) > Math.abs(m[p * n + c]!)) p = r;
    for (let k = 0; k < n; k++) {
      [m[c * n + k], m[p * n + k]] = [m[p * n + k]!, m[c * n + k]!];
      [inv[c * n + k], inv[p * n + k]] = [inv[p * n + k]!, inv[c * n + k]!];
    }
    const d = m[c * n + c]!;
    for (let k = 0; k < n; k++) {
      m[c * n + k] /= d;
      inv[c * n + k] /= d;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c]!;
      if (f === 0) continue;
      for (let k = 0; k < n; k++) {
        m[r * n + k] -= f * m[c * n + k]!;
        inv[r * n + k] -= f * inv[c * n + k]!;
      }
    }
  }
  return inv;
}

/**
 * Textbook OBS, column by column, with explicit inverses of the Hessian restricted to
 * the not-yet-processed columns (no Cholesky, no lazy updates): the independent
 * reference for the blocked implementation.
 */
function naiveObs(w0: Float32Array, rows: number, cols: number, h0: Float64Array, sparsity: number, n: number, m: number, block: number): Float64Array {
  const H = Float64Array.from(h0);
  const W = Float64Array.from(w0);
  for (let j = 0; j < cols; j++) if (H[j * cols + j] === 0) {
    H[j * cols + j] = 1;
    for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
  }
  let md = 0;
  for (let j = 0; j < cols; j++) md += H[j * cols + j]!;
  for (let j = 0; j < cols; j++) H[j * cols + j] += (0.01 * md) / cols;
  // Row j of the trailing inverse, for each j.
  const trail: Float64Array[] = [];
  for (let j = 0; j < cols; j++) {
    const k = cols - j;
    const sub = new Float64Array(k * k);
    for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) sub[a * k + b] = H[(j + a) * cols + j + b]!;
    trail.push(inverse(sub, k).subarray(0, k));
  }
  const dsq = (j: number) => trail[j]![0]!; // [H_F⁻¹]_jj = U_jj²
  const mask = new Uint8Array(rows * cols);
  for (let b0 = 0; b0 < cols; b0 += block) {
    const b1 = Math.min(b0 + block, cols);
    if (n === 0) {
      const k = Math.floor(sparsity * b1) - Math.floor(sparsity * b0);
      for (let r = 0; r < rows; r++) {
        const order = Array.from({ length: b1 - b0 }, (_, i) => b0 + i).sort((a, b) => W[r * cols + a]! ** 2 / dsq(a) - W[r * cols + b]! ** 2 / dsq(b));
        for (const j of order.slice(0, k)) mask[r * cols + j] = 1;
      }
    }
    for (let j = b0; j < b1; j++) {
      if (n > 0 && (j - b0) % m === 0) {
        for (let r = 0; r < rows; r++) {
          const order = Array.from({ length: m }, (_, i) => j + i).sort((a, b) => W[r * cols + a]! ** 2 / dsq(a) - W[r * cols + b]! ** 2 / dsq(b));
          for (const c of order.slice(0, n)) mask[r * cols + c] = 1;
        }
      }
      const row = trail[j]!;
      const d = Math.sqrt(row[0]!);
      for (let r = 0; r < rows; r++) {
        const wv = W[r * cols + j]!;
        const q = mask[r * cols + j] ? 0 : wv;
        const e = (wv - q) / d;
        for (let c = j; c < cols; c++) W[r * cols + c] -= (e * row[c - j]!) / d;
        W[r * cols + j] = q;
      }
    }
  }
  return W;
}

test('upper Cholesky of the inverse: UᵀU · H = I', () => {
  const n = 12;
  const x = makeInputs(200, n, 'chol');
  const h = gram(x, 200, n);
  const u = upperCholeskyOfInverse(Float64Array.from(h), n);
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0, 'U is upper triangular');
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) {
        let hinv = 0;
        for (let t = 0; t < n; t++) hinv += u[t * n + i]! * u[t * n + k]!;
        s += hinv * h[k * n + j]!;
      }
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-8, `(UᵀU H)[${i},${j}] = ${s}`);
    }
  }
  assert.throws(() => choleskyLower(Float64Array.from([1, 2, 2, 1]), 2), /not positive definite/);
});

for (const [label, n, m] of [['unstructured', 0, 0], ['2:4', 2, 4], ['4:8', 4, 8]] as const) {
  test(`blocked SparseGPT equals column-by-column OBS with explicit inverses (${label})`, () => {
    const rows = 7;
    const cols = 24;
    const tokens = 300;
    const x = makeInputs(tokens, cols, `eq-${label}`, [5]);
    const h = gram(x, tokens, cols);
    const w = randomWeights(rows, cols, `w-${label}`);
    const ref = naiveObs(w, rows, cols, h, 0.5, n, m, 8);
    const got = Float32Array.from(w);
    const acc = new HessianAccumulator(cols);
    acc.add(h, 10);
    const res = sparseGpt(got, rows, cols, acc.hessian(), { sparsity: 0.5, n, m, blockSize: 8 });
    for (let i = 0; i < got.length; i++) {
      assert.ok(Math.abs(got[i]! - ref[i]!) < 1e-4 * (1 + Math.abs(ref[i]!)), `weight ${i}: ${got[i]} vs reference ${ref[i]}`);
      // Pruned exactly where the reference pruned (column 5 is dead: zero either way).
      if (i % cols !== 5) assert.equal(res.mask[i] === 1, ref[i] === 0, `mask ${i}`);
      if (res.mask[i]) assert.equal(got[i], 0);
    }
    assert.ok(res.loss > 0 && Number.isFinite(res.loss));
  });
}

test('SparseGPT: exact sparsity per row / per N:M group, dead input zeroed, update beats the mask alone', () => {
  const rows = 16;
  const cols = 160; // two blocks of 128 and 32 columns
  const tokens = 600;
  const dead = [3, 100];
  const x = makeInputs(tokens, cols, 'recon', dead);
  const h = gram(x, tokens, cols);
  for (const [n, m] of [[0, 0], [2, 4], [4, 8]] as const) {
    for (const sparsity of n ? [0.5] : [0.5, 0.3]) {
      const w = randomWeights(rows, cols, `recon-w-${n}`);
      const wh = Float32Array.from(w);
      const acc = new HessianAccumulator(cols);
      acc.add(h, 50);
      const { mask } = sparseGpt(wh, rows, cols, acc.hessian(), { sparsity, n, m });
      for (let r = 0; r < rows; r++) {
        if (n === 0) {
          let c = 0;
          for (let j = 0; j < cols; j++) c += mask[r * cols + j]!;
          assert.equal(c, Math.floor(cols * sparsity), `row ${r}`);
        } else {
          for (let g = 0; g < cols; g += m) {
            let c = 0;
            for (let j = g; j < g + m; j++) c += mask[r * cols + j]!;
            assert.equal(c, n, `row ${r} group ${g}`);
          }
        }
        for (const d of dead) assert.equal(wh[r * cols + d], 0, 'dead input column zeroed');
      }
      for (let i = 0; i < wh.length; i++) {
        assert.ok(Number.isFinite(wh[i]!));
        if (mask[i]) assert.equal(wh[i], 0);
      }
      const maskOnly = w.map((v, i) => (mask[i] ? 0 : v));
      const eUpdate = reconError(x, tokens, cols, w, wh, rows);
      const eMask = reconError(x, tokens, cols, w, maskOnly, rows);
      assert.ok(eUpdate < 0.8 * eMask, `${n}:${m} s=${sparsity}: reconstruction error with OBS update ${eUpdate.toFixed(1)} vs mask alone ${eMask.toFixed(1)}`);
    }
  }
});
