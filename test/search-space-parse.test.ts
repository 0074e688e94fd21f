// Parsing and printing: infix, Pruner-Zero's JSON tree (its published best_tree.json),
// symprune's JSON tree, LaTeX, and one clear error per malformation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { InputError } from '../src/errors.ts';
import {
  KNOWN_METRICS,
  compileTree,
  metricFromSpec,
  parseMetric,
  randomTerminalData,
  toInfix,
  toLatex,
  toPrunerZeroJson,
  toTreeJson,
  treeEquals,
  validateTree,
} from '../src/search-space/index.ts';
import { ALL_PRIMITIVES, createRng, randomTree } from '../src/gp/index.ts';

const BEST_TREE = '/work/shared/reference/pruner-zero-best_tree.json';

test("Pruner-Zero's published best_tree.json parses, prints and scores as |W|^2 * mms(G)", () => {
  const text = readFileSync(BEST_TREE, 'utf8');
  const tree = parseMetric(text);
  assert.equal(toInfix(tree), 'mul(abs(mul(W,W)),mms(G))');
  assert.ok(treeEquals(tree, KNOWN_METRICS['pruner-zero'].tree));
  // Printing back gives the same JSON object (key order and nesting included).
  assert.deepEqual(toPrunerZeroJson(tree), JSON.parse(text));
  assert.equal(JSON.stringify(toPrunerZeroJson(tree), null, 4), text.trim());
  assert.equal(toLatex(tree), '\\left|W \\cdot W\\right| \\cdot \\operatorname{mms}\\left(G\\right)');

  // Scores, computed independently: |W|^2 * (G - min G) / (max G - min G)
  const d = randomTerminalData('best-tree', 7, 11, { profile: 'llm' });
  const s = compileTree(tree)(d);
  const G = Array.from(d.G!);
  const lo = Math.min(...G);
  const hi = Math.max(...G);
  for (let i = 0; i < s.length; i++) {
    const expected = d.W[i]! ** 2 * ((G[i]! - lo) / (hi - lo));
    assert.ok(Math.abs(s[i]! - expected) <= 1e-6 * Math.abs(expected) + 1e-30, `score ${i}: ${s[i]} vs ${expected}`);
  }
});

test('infix and both JSON formats round-trip on random trees', () => {
  const rng = createRng('parse-roundtrip');
  for (let n = 0; n < 300; n++) {
    const t = randomTree(rng, ALL_PRIMITIVES, 1 + rng.int(6), n % 2 ? 'grow' : 'full');
    const infix = toInfix(t);
    assert.ok(treeEquals(parseMetric(infix), t), infix);
    assert.ok(treeEquals(parseMetric(JSON.stringify(toPrunerZeroJson(t))), t), infix);
    assert.ok(treeEquals(parseMetric(JSON.stringify(toTreeJson(t))), t), infix);
    assert.equal(toInfix(parseMetric(JSON.stringify(toTreeJson(t)))), infix);
  }
});

test('infix tolerates whitespace and case; JSON wrappers with infix or tree are read', () => {
  assert.equal(toInfix(parseMetric('  MUL( w , Sqrt(x) ) ')), 'mul(W,sqrt(X))');
  assert.equal(toInfix(parseMetric('"mul(W,G)"')), 'mul(W,G)');
  assert.equal(toInfix(parseMetric('{"infix": "add(W,G)", "fitness": 3.2}')), 'add(W,G)');
  assert.equal(toInfix(parseMetric('{"tree": {"op": "neg", "args": [{"op": "W"}]}}')), 'neg(W)');
  assert.equal(toInfix(metricFromSpec('wanda')), 'mul(W,sqrt(X))');
  assert.equal(toInfix(metricFromSpec('Pruner-Zero')), 'mul(abs(mul(W,W)),mms(G))');
});

test('LaTeX of each operator', () => {
  const cases: [string, string][] = [
    ['sqr(add(W,G))', '\\left(W + G\\right)^{2}'],
    ['neg(add(W,G))', '-\\left(W + G\\right)'],
    ['sub(W,neg(G))', 'W - \\left(-G\\right)'],
    ['log(W)', '\\log\\left(W + 10^{-3}\\right)'],
    ['log(zsn(W))', '\\log\\left(\\left|\\operatorname{zsn}\\left(W\\right)\\right| + 10^{-3}\\right)'],
    ['sqrt(X)', '\\sqrt{X}'],
    ['sqr(exp(W))', '\\left(e^{W}\\right)^{2}'],
    ['tanh(skp(G))', '\\tanh\\left(G\\right)'],
    ['div(mul(W,X),G)', '\\frac{W \\cdot X}{\\lVert G \\rVert_F}'],
    ['mul(add(W,G),X)', '\\left(W + G\\right) \\cdot X'],
    ['add(mul(W,sqrt(X)),mul(W,G))', 'W \\cdot \\sqrt{X} + W \\cdot G'],
  ];
  for (const [infix, latex] of cases) assert.equal(toLatex(parseMetric(infix)), latex, infix);
});

test('malformed metrics get one clear InputError naming the problem', () => {
  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['mul(W,foo)', /unknown operator or terminal 'foo' at position 7/],
    ['mul(W)', /'mul' takes 2 argument\(s\), got 1/],
    ['sqrt(W,G)', /'sqrt' takes 1 argument\(s\), got 2/],
    ['W(G)', /'W' takes 0 argument\(s\), got 1/],
    ['mul(W,G', /missing '\)'/],
    ['mul(W,G))', /unexpected '\)' after the metric/],
    ['add(W,2)', /numeric constants \(2\) are not supported/],
    ['mul(W G)', /expected ',' or '\)'/],
    ['{"data": "mul", "left": {"data": "W"}', /bad JSON/],
    ['{"data": "mul", "left": {"data": "W"}}', /root: 'mul' takes 2 argument\(s\)/],
    ['{"data": "abs", "right": {"data": "W"}}', /root: 'abs' takes 1 argument\(s\) \(only "left"\)/],
    ['{"data": "mul", "left": {"data": "W"}, "right": {"data": "frob"}}', /root\.right: unknown operator or terminal 'frob'/],
    ['{"data": "W", "extra": 1}', /unexpected key "extra"/],
    ['{"op": "mul", "args": [{"op": "W"}]}', /'mul' takes 2 argument\(s\), got 1/],
    ['{"foo": 1}', /none of "data"/],
    ['[1, 2]', /must be an object/],
    ['wandaa', /known metric names: magnitude, wanda, gblm, pruner-zero/],
  ];
  for (const [text, re] of bad) {
    assert.throws(
      () => metricFromSpec(text),
      (e: unknown) => e instanceof InputError && re.test(e.message) && !e.message.includes('\n'),
      `${text} should fail with ${re}`,
    );
  }
});

test('validateTree: shape and structure', () => {
  assert.equal(validateTree(parseMetric('mul(W,X)')), null);
  assert.equal(validateTree(parseMetric('div(X,G)')), null);
  assert.match(validateTree(parseMetric('mul(sqrt(X),X)'))!, /only X/);
  assert.match(validateTree({ op: 'mul', args: [{ op: 'W', args: [] }] } as never)!, /'mul' takes 2/);
  assert.match(validateTree({ op: 'frob', args: [] } as never)!, /unknown operator 'frob'/);
});
