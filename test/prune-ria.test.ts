import { test } from 'node:test';
import assert from 'node:assert/strict';
import { riaScores } from '../src/prune/ria.ts';

test('RIA scores on a hand-worked 2x3 layer', () => {
  // W = [[1, -2, 3], [0, 4, -1]]; row sums |W|: 6, 5; column sums: 1, 6, 4; X = [4, 1, 16].
  const w = Float32Array.from([1, -2, 3, 0, 4, -1]);
  const x = Float32Array.from([4, 1, 16]);
  const s = riaScores(w, 2, 3, x);
  // sqrt(X)^0.5 = X^0.25 = [sqrt2, 1, 2]
  const expected = [
    (1 / 6 + 1 / 1) * Math.SQRT2, (2 / 6 + 2 / 6) * 1, (3 / 6 + 3 / 4) * 2,
    0, (4 / 5 + 4 / 6) * 1, (1 / 5 + 1 / 4) * 2,
  ];
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(s[i]! - expected[i]!) < 1e-6, `score ${i}: ${s[i]} vs ${expected[i]}`);
  // exponent a = 1 gives sqrt(X) itself
  const s1 = riaScores(w, 2, 3, x, 1);
  assert.ok(Math.abs(s1[2]! - (3 / 6 + 3 / 4) * 4) < 1e-6);
});

test('RIA: an all-zero row and column score 0, never NaN', () => {
  const w = Float32Array.from([0, 0, 0, 0, 2, 0]);
  const s = riaScores(w, 2, 3, Float32Array.from([1, 1, 1]));
  assert.deepEqual(Array.from(s), [0, 0, 0, 0, 2, 0]);
});
