import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { InputError } from '../src/errors.ts';
import { baselineMethod, metricMethodFromText } from '../src/prune/baselines.ts';
import { layerThresholdMask, maskScores, maskSparsity, parsePattern, ScoreScratch, type LayerArrays } from '../src/prune/score.ts';

function layer(rows: number, cols: number, seed: string, withG = true): LayerArrays {
  const rng = seedrandom(seed);
  return {
    rows,
    cols,
    weight: Float32Array.from({ length: rows * cols }, () => rng() * 2 - 1),
    X: Float32Array.from({ length: cols }, () => rng() * 10),
    G: withG ? Float32Array.from({ length: rows * cols }, () => rng()) : null,
  };
}

/** Wanda as its authors wrote it (lib/prune.py prune_wanda), in plain loops: per row, sort |W|·sqrt(X), prune the first int(cols·s). */
function plainWanda(l: LayerArrays, sparsity: number): Uint8Array {
  const mask = new Uint8Array(l.rows * l.cols);
  const k = Math.floor(l.cols * sparsity);
  for (let r = 0; r < l.rows; r++) {
    const metric = Array.from({ length: l.cols }, (_, j) => Math.abs(l.weight[r * l.cols + j]!) * Math.sqrt(l.X![j]!));
    const order = metric.map((v, j) => [v, j] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (let t = 0; t < k; t++) mask[r * l.cols + order[t]![1]] = 1;
  }
  return mask;
}

test('Wanda through the harness equals a plain independent implementation', () => {
  const wanda = baselineMethod('wanda');
  assert.deepEqual(wanda.needs, { X: true, G: false });
  for (const [rows, cols, s] of [[8, 32, 0.5], [5, 37, 0.3], [3, 16, 0.75]] as const) {
    const l = layer(rows, cols, `wanda-${rows}-${cols}`, false);
    const scores = wanda.score!(l, { name: 'x', scratch: new ScoreScratch() });
    const got = maskScores(scores, rows, cols, { sparsity: s, pattern: { kind: 'unstructured' }, grouping: wanda.grouping });
    assert.deepEqual(Array.from(got.mask), Array.from(plainWanda(l, s)), `${rows}x${cols} at ${s}`);
    const st = maskSparsity(got.mask, rows, cols);
    assert.equal(st.rowMin, Math.floor(cols * s) / cols);
    assert.equal(st.rowMax, Math.floor(cols * s) / cols);
  }
});

test('exact sparsity per row (unstructured) and per group (2:4, 4:8) for every scoring baseline', () => {
  const rows = 12;
  const cols = 64;
  for (const name of ['magnitude', 'wanda', 'gblm', 'ria', 'pruner-zero', 'random']) {
    const m = baselineMethod(name);
    const l = layer(rows, cols, `all-${name}`);
    const scores = Float32Array.from(m.score!(l, { name: 'model.layers.0.mlp.up_proj', scratch: new ScoreScratch() }));
    for (const pat of ['unstructured', '2:4', '4:8']) {
      const p = parsePattern(pat, 0.5);
      const { mask } = maskScores(scores, rows, cols, { sparsity: 0.5, pattern: p, grouping: m.grouping });
      if (p.kind === 'nm') {
        for (let g = 0; g < rows * cols; g += p.m) {
          let c = 0;
          for (let t = 0; t < p.m; t++) c += mask[g + t]!;
          assert.equal(c, p.n, `${name} ${pat} group at ${g}`);
        }
      } else if (m.grouping === 'row') {
        const st = maskSparsity(mask, rows, cols);
        assert.equal(st.rowMin, 0.5, `${name} rows`);
        assert.equal(st.rowMax, 0.5, `${name} rows`);
      } else {
        assert.equal(maskSparsity(mask, rows, cols).pruned, rows * cols / 2, `${name} layer total`);
      }
    }
  }
});

test('magnitude: one threshold over the layer, not per row', () => {
  // Row 0 holds all the small weights: a per-layer threshold prunes row 0 entirely.
  const w = Float32Array.from([0.1, -0.2, 0.3, 0.05, 5, -6, 7, 8]);
  const m = baselineMethod('magnitude');
  const scores = m.score!({ rows: 2, cols: 4, weight: w, X: null, G: null }, { name: 'l', scratch: new ScoreScratch() });
  const { mask } = maskScores(scores, 2, 4, { sparsity: 0.5, pattern: { kind: 'unstructured' }, grouping: m.grouping });
  assert.deepEqual(Array.from(mask), [1, 1, 1, 1, 0, 0, 0, 0]);
});

test('layer threshold: exact count with ties by position, NaN kept', () => {
  const r = layerThresholdMask(Float32Array.from([3, 1, 1, 1, NaN, 2]), 0.5);
  assert.deepEqual(Array.from(r.mask), [0, 1, 1, 1, 0, 0]);
  assert.equal(r.nanCount, 1);
  assert.equal(r.pruned, 3);
  const t = layerThresholdMask(Float32Array.from([2, 2, 2, 2]), 0.5);
  assert.deepEqual(Array.from(t.mask), [1, 1, 0, 0]);
});

test('random is seeded by layer name: same name same mask, other name other mask', () => {
  const m = baselineMethod('random');
  const l = layer(4, 16, 'r');
  const a = Float32Array.from(m.score!(l, { name: 'a', scratch: new ScoreScratch() }));
  const a2 = Float32Array.from(m.score!(l, { name: 'a', scratch: new ScoreScratch() }));
  const b = Float32Array.from(m.score!(l, { name: 'b', scratch: new ScoreScratch() }));
  assert.deepEqual(a, a2);
  assert.notDeepEqual(a, b);
});

test('metrics from text: needs follow the terminals; bad input is an InputError', () => {
  assert.deepEqual(metricMethodFromText('mul(W, sqrt(X))').needs, { X: true, G: false });
  assert.deepEqual(metricMethodFromText('pruner-zero').needs, { X: false, G: true });
  assert.deepEqual(metricMethodFromText('{"data":"mul","left":{"data":"W"},"right":{"data":"G"}}').needs, { X: false, G: true });
  assert.throws(() => metricMethodFromText('frob(W)'), InputError);
  assert.throws(() => baselineMethod('obs'), /unknown method; expected one of magnitude, wanda/);
  assert.throws(() => parsePattern('2:4', 0.6), /prunes exactly 50%/);
  assert.throws(() => parsePattern('3:4', 0.5), InputError);
  assert.throws(() => parsePattern('diagonal', 0.5), /expected unstructured, 2:4 or 4:8/);
  for (const s of [0, 1, -0.1, 1.5, NaN]) assert.throws(() => parsePattern('unstructured', s), /strictly between 0 and 1/);
});
