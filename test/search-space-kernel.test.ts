// Compiled kernels against the reference interpreter: bit-identical scores (and so identical
// masks) on random trees, random shapes and awkward data; scratch reuse across calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compileTree,
  interpret,
  parseMetric,
  randomTerminalData,
  toInfix,
  unstructuredMask,
  validateTree,
  type TerminalData,
} from '../src/search-space/index.ts';
import { ALL_PRIMITIVES, createRng, randomTree } from '../src/gp/index.ts';

function assertSame(tree: string, a: Float32Array, b: Float32Array) {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) assert.fail(`${tree}: element ${i} kernel ${a[i]} vs interpreter ${b[i]}`);
  }
}

test('compiled kernels equal the interpreter bit for bit on random trees', () => {
  const rng = createRng('kernel-vs-interpreter');
  const datasets: TerminalData[] = [
    randomTerminalData('k1', 7, 13, { profile: 'llm' }),
    randomTerminalData('k2', 5, 32, { profile: 'unit' }),
    randomTerminalData('k3', 1, 9, { profile: 'unit' }),
  ];
  // Awkward data: zeros, a NaN, an inf, huge values.
  const awk = randomTerminalData('k4', 4, 8, { profile: 'unit' });
  awk.W[3] = 0;
  awk.W[5] = NaN;
  awk.G![7] = Infinity;
  awk.W[9] = 3e38;
  awk.X[2] = 0;
  datasets.push(awk);
  let compared = 0;
  let multiPass = 0;
  for (let n = 0; n < 400; n++) {
    const t = randomTree(rng, ALL_PRIMITIVES, 1 + rng.int(6), n % 2 ? 'grow' : 'full');
    if (validateTree(t)) continue;
    const kernel = compileTree(t);
    if (kernel.passes > 1) multiPass++;
    for (const d of datasets) {
      const ref = interpret(t, d);
      const got = kernel(d);
      assertSame(toInfix(t), got, ref);
      // A second call reuses scratch arrays and an output buffer: same result.
      const out = new Float32Array(d.rows * d.cols).fill(7);
      assertSame(toInfix(t), kernel(d, out), ref);
      const mk = unstructuredMask(got, d.rows, d.cols, 0.5);
      const mr = unstructuredMask(ref, d.rows, d.cols, 0.5);
      assert.deepEqual(mk.mask, mr.mask);
      compared++;
    }
  }
  assert.ok(compared > 600, `compared ${compared}`);
  assert.ok(multiPass > 50, `trees with statistics passes: ${multiPass}`);
});

test('representative kernels: passes, stored subtrees, shared statistics', () => {
  const d = randomTerminalData('rep', 6, 10, { profile: 'llm' });
  const cases: [string, number, number][] = [
    ['W', 1, 0],
    ['mul(W,sqrt(X))', 1, 0],
    ['mul(abs(mul(W,W)),mms(G))', 2, 0],
    ['add(mul(W,sqrt(X)),mul(W,G))', 1, 0],
    // zsn needs mean then variance; the log subtree is stored, not recomputed
    ['add(zsn(log(mul(W,G))),mms(tanh(mul(W,X))))', 3, 2],
    // nested: mms(W) -> zsn(...) (2 passes) -> mms(...) -> final; mul(G,mms(W)) is stored
    ['mms(zsn(mul(G,mms(W))))', 5, 1],
    // the same reduction twice is computed once
    ['add(mms(G),mul(W,mms(G)))', 2, 0],
    // a row-shaped divisor needs no pass over the full tensor
    ['div(W,sqrt(X))', 1, 0],
    ['div(W,G)', 2, 0],
  ];
  for (const [infix, passes, stored] of cases) {
    const t = parseMetric(infix);
    const k = compileTree(t);
    assert.equal(k.passes, passes, `${infix} passes`);
    assert.equal(k.scratchArrays, stored, `${infix} stored subtrees`);
    assertSame(infix, k(d), interpret(t, d));
    k.release();
    assertSame(infix, k(d), interpret(t, d));
  }
});

test('a kernel serves layers of different shapes', () => {
  const k = compileTree(parseMetric('add(zsn(log(mul(W,X))),G)'));
  for (const [r, c] of [
    [3, 4],
    [9, 2],
    [2, 2],
    [0, 5],
  ] as const) {
    const d = randomTerminalData(`shape${r}x${c}`, r, c);
    assertSame(`${r}x${c}`, k(d), interpret(k.tree, d));
  }
});
