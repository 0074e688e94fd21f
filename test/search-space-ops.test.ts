// Every operator against hand-worked values, in both the reference interpreter and the
// compiled kernel, including broadcasting and the documented edge cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../src/errors.ts';
import { compileTree, interpret, parseMetric, type TerminalData } from '../src/search-space/index.ts';

// rows = 2, cols = 3
const data: TerminalData = {
  rows: 2,
  cols: 3,
  W: new Float32Array([1, 2, 3, 4, 0.5, 0]),
  G: new Float32Array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
  X: new Float32Array([1, 4, 9]),
};

const f32 = (xs: number[]) => Array.from(new Float32Array(xs));

/** Scores from both implementations; they must agree bit for bit. */
function scores(metric: string, d: TerminalData = data): number[] {
  const t = parseMetric(metric);
  const a = interpret(t, d);
  const b = compileTree(t)(d);
  assert.equal(a.length, d.rows * d.cols);
  for (let i = 0; i < a.length; i++) assert.ok(Object.is(a[i], b[i]), `${metric}[${i}]: interpreter ${a[i]} vs kernel ${b[i]}`);
  return Array.from(a);
}

function close(actual: number[], expected: number[], rel = 1e-6) {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    if (Number.isNaN(e)) assert.ok(Number.isNaN(a), `[${i}] expected NaN, got ${a}`);
    else if (!Number.isFinite(e)) assert.equal(a, e, `[${i}]`);
    else assert.ok(Math.abs(a - e) <= rel * Math.max(1, Math.abs(e)), `[${i}] expected ${e}, got ${a}`);
  }
}

test('terminals and elementwise unary operators', () => {
  assert.deepEqual(scores('W'), f32([1, 2, 3, 4, 0.5, 0]));
  assert.deepEqual(scores('sqr(W)'), [1, 4, 9, 16, 0.25, 0]);
  assert.deepEqual(scores('pow(W)'), [1, 4, 9, 16, 0.25, 0]);
  assert.deepEqual(scores('neg(W)'), [-1, -2, -3, -4, -0.5, -0]);
  assert.deepEqual(scores('abs(neg(W))'), [1, 2, 3, 4, 0.5, 0]);
  assert.deepEqual(scores('skp(G)'), f32([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]));
  // log is protected: log(|x| + 0.001)
  close(scores('log(W)'), [Math.log(1.001), Math.log(2.001), Math.log(3.001), Math.log(4.001), Math.log(0.501), Math.log(0.001)]);
  close(scores('log(neg(W))'), [Math.log(1.001), Math.log(2.001), Math.log(3.001), Math.log(4.001), Math.log(0.501), Math.log(0.001)]);
  close(scores('exp(W)'), [Math.E, Math.exp(2), Math.exp(3), Math.exp(4), Math.exp(0.5), 1]);
  // sqrt is protected: sqrt(|x|)
  close(scores('sqrt(neg(W))'), [1, Math.SQRT2, Math.sqrt(3), 2, Math.sqrt(0.5), 0]);
  close(scores('tanh(neg(W))'), [-Math.tanh(1), -Math.tanh(2), -Math.tanh(3), -Math.tanh(4), -Math.tanh(0.5), -0]);
});

test('exp clamps its argument at 100, then float32 overflows to +inf as torch float32 does', () => {
  const d: TerminalData = { rows: 1, cols: 3, W: new Float32Array([80, 200, 1e30]), G: null, X: new Float32Array([1, 1, 1]) };
  const s = scores('exp(W)', d);
  close([s[0]!], [Math.exp(80)], 1e-6);
  assert.equal(s[1], Infinity);
  assert.equal(s[2], Infinity);
  // exp(-large) underflows to 0, never NaN
  assert.deepEqual(scores('exp(neg(W))', d), [Math.fround(Math.exp(-80)), 0, 0]);
});

test('whole-tensor mms and zsn', () => {
  // min 0, max 4
  assert.deepEqual(scores('mms(W)'), f32([0.25, 0.5, 0.75, 1, 0.125, 0]));
  // mean 1.75, unbiased variance 11.875 / 5 = 2.375
  const sd = Math.sqrt(2.375);
  close(scores('zsn(W)'), [1, 2, 3, 4, 0.5, 0].map((w) => (w - 1.75) / sd));
});

test('binary operators broadcast X over rows', () => {
  assert.deepEqual(scores('add(W,X)'), [2, 6, 12, 5, 4.5, 9]);
  assert.deepEqual(scores('sub(X,W)'), [0, 2, 6, -3, 3.5, 9]);
  assert.deepEqual(scores('mul(W,X)'), [1, 8, 27, 4, 2, 0]);
  close(scores('mul(W,sqrt(X))'), [1, 4, 9, 4, 1, 0]);
});

test('div divides by the Frobenius norm of the broadcast divisor', () => {
  const normG = Math.sqrt(0.01 + 0.04 + 0.09 + 0.16 + 0.25 + 0.36);
  close(scores('div(W,G)'), [1, 2, 3, 4, 0.5, 0].map((w) => w / normG));
  // X broadcast to 2 rows: sqrt(2 * (1 + 16 + 81)) = 14
  close(scores('div(W,X)'), [1, 2, 3, 4, 0.5, 0].map((w) => w / 14));
  // x row-shaped, y full: the result is full, each row X / ||W|| = X / 5.5
  close(scores('div(X,W)'), [1, 4, 9, 1, 4, 9].map((x) => x / 5.5));
});

test('row-shaped subtrees keep [in]-shaped statistics (as a [1, in] torch tensor)', () => {
  // mms(X) over the 3 values of X, then broadcast
  close(scores('mul(W,mms(X))'), [0, 2 * 0.375, 3, 0, 0.5 * 0.375, 0]);
  // zsn(X): mean 14/3, unbiased std over 3 values
  const m = 14 / 3;
  const sd = Math.sqrt(((1 - m) ** 2 + (4 - m) ** 2 + (9 - m) ** 2) / 2);
  close(scores('add(W,zsn(X))'), [1 + (1 - m) / sd, 2 + (4 - m) / sd, 3 + (9 - m) / sd, 4 + (1 - m) / sd, 0.5 + (4 - m) / sd, (9 - m) / sd]);
});

test('edge cases are deterministic: constant mms/zsn give 0, a zero-norm divisor is replaced by 1', () => {
  assert.deepEqual(scores('mms(sub(W,W))'), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(scores('zsn(sub(G,G))'), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(scores('div(W,sub(W,W))'), f32([1, 2, 3, 4, 0.5, 0]));
  // a single finite element: zsn has no std -> 0
  const one: TerminalData = { rows: 1, cols: 1, W: new Float32Array([5]), G: null, X: new Float32Array([2]) };
  assert.deepEqual(scores('zsn(W)', one), [0]);
});

test('non-finite elements pass through mms/zsn and are ignored by their statistics', () => {
  const d: TerminalData = {
    rows: 1,
    cols: 5,
    W: new Float32Array([NaN, 1, 3, Infinity, 2]),
    G: null,
    X: new Float32Array([1, 1, 1, 1, 1]),
  };
  close(scores('mms(W)', d), [NaN, 0, 1, Infinity, 0.5]);
  // mean 2, std 1 over the finite {1, 3, 2}
  close(scores('zsn(W)', d), [NaN, -1, 1, Infinity, 0]);
  // the norm over finite elements only: sqrt(1 + 9 + 4)
  close(scores('div(X,W)', d), [1, 1, 1, 1, 1].map((x) => x / Math.sqrt(14)));
});

test('bad metrics and bad data are InputErrors naming the problem', () => {
  assert.throws(() => interpret(parseMetric('mul(X,X)'), data), (e: unknown) => e instanceof InputError && /only X/.test(e.message));
  assert.throws(() => compileTree(parseMetric('sqrt(X)')), (e: unknown) => e instanceof InputError && /shape \[in\]/.test(e.message));
  const noG = { ...data, G: null };
  assert.throws(() => compileTree(parseMetric('mul(W,G)'))(noG), (e: unknown) => e instanceof InputError && /uses G/.test(e.message));
  assert.throws(() => interpret(parseMetric('G'), noG), (e: unknown) => e instanceof InputError && /uses G/.test(e.message));
  const shortX = { ...data, X: new Float32Array(2) };
  assert.throws(() => compileTree(parseMetric('W'))(shortX), (e: unknown) => e instanceof InputError && /X must be/.test(e.message));
  assert.throws(
    () => compileTree(parseMetric('W'))(data, new Float32Array(5)),
    (e: unknown) => e instanceof InputError && /output/.test(e.message),
  );
});
