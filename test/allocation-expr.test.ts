/**
 * Layer-wise allocation by an expression over per-block statistics: the overall sparsity
 * (parameter-weighted mean of the layers' sparsities) is exactly s, the spread is at most
 * 2λ, degenerate scores fall back to uniform, and mms(R) is OWL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { cloneModel } from '../src/onnx/graph-edit.ts';
import { discoverLayers, readLayerWeight, type PrunableLayer } from '../src/prune/discover.ts';
import { baselineMethod } from '../src/prune/baselines.ts';
import { denseX, pruneModel } from '../src/prune/prune-model.ts';
import { parsePattern } from '../src/prune/score.ts';
import {
  allocateByExpression,
  allocationFromText,
  blockStatistics,
  layerAllocation,
  layerSparsities,
  offsetSparsity,
  outlierRatio,
  owlAllocation,
  parseAllocation,
  wandaScores,
} from '../src/prune/allocation.ts';
import { blockScores, canonicalizeAllocation, parseAllocationExpr, toInfix, validateTree, parseMetric } from '../src/search-space/index.ts';
import { createRng, randomTree, ALL_PRIMITIVES } from '../src/gp/index.ts';
import { InputError } from '../src/errors.ts';
import { assertOverallSparsity } from './support/zeros.ts';

const close = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b}`);

/** Parameter-weighted mean of the blocks' sparsities, and their span. */
function check(sp: number[], params: number[], s: number, lambda: number, what: string): void {
  const total = params.reduce((a, b) => a + b, 0);
  close(sp.reduce((a, v, i) => a + v * params[i]!, 0) / total, s, 1e-12, `${what}: weighted mean`);
  assert.ok(Math.max(...sp) - Math.min(...sp) <= 2 * lambda + 1e-12, `${what}: span ${Math.max(...sp) - Math.min(...sp)}`);
  for (const v of sp) assert.ok(v >= 0 && v < 1 && v >= s - 2 * lambda && v <= s + 2 * lambda, `${what}: ${v}`);
}

test('the rule, hand-worked: scores span < 1 kept as they are, > 1 shrunk to span 1; weighted by parameters', () => {
  // v = [0.1, 0.5, 0.3], params [1, 1, 2]: weighted mean (0.1 + 0.5 + 0.6) / 4 = 0.3; span 0.4 < 1 -> c = 1.
  // s = 0.6, lambda = 0.1: s - 0.2 (v - 0.3) = [0.64, 0.56, 0.6].
  const a = offsetSparsity([0.1, 0.5, 0.3], [1, 1, 2], 0.6, 0.1);
  [0.64, 0.56, 0.6].forEach((w, i) => close(a.sparsity[i]!, w, 1e-15));
  assert.equal(a.fallback, null);
  // v = [0, 4, 2], params [1, 1, 2]: mean 2, span 4 -> c = 1/4: s - 0.2 (v - 2) / 4 = [0.7, 0.5, 0.6].
  const b = offsetSparsity([0, 4, 2], [1, 1, 2], 0.6, 0.1);
  [0.7, 0.5, 0.6].forEach((w, i) => close(b.sparsity[i]!, w, 1e-15));
  // Degenerate: constant, NaN, infinite -> uniform, with the reason.
  for (const v of [[0.2, 0.2, 0.2], [0.1, NaN, 0.3], [0.1, Infinity, 0.3], [-Infinity, 0, 1]]) {
    const r = offsetSparsity(v, [1, 1, 1], 0.6, 0.1);
    assert.deepEqual(r.sparsity, [0.6, 0.6, 0.6]);
    assert.ok(r.fallback, `${v}`);
  }
  // A block pushed out of [0, 1) is refused.
  assert.throws(() => offsetSparsity([0, 1], [1, 1], 0.95, 0.08), InputError);
});

test('parsing: R, A, M, D only; metric terminals refused, and allocation terminals refused in a metric', () => {
  assert.equal(toInfix(parseAllocationExpr('mms( r )')), 'mms(R)');
  assert.deepEqual(parseAllocation('add(mms(R),neg(D))', 5, 0.05), { kind: 'expr', expr: 'add(mms(R),neg(D))', m: 5, lambda: 0.05 });
  assert.throws(() => parseAllocation('mul(W,R)'), /uses W, a per-weight metric terminal/);
  assert.throws(() => parseAllocation('owls'), /expected uniform, owl, or an expression/);
  assert.throws(() => parseAllocation('foo(R)'), /unknown operator or terminal 'foo'/);
  assert.throws(() => parseAllocation('mms(R'), InputError);
  assert.throws(() => parseAllocation('mms(R)', 5, 0.6), /--owl-lambda/);
  assert.match(validateTree(parseMetric('mul(W,R)'))!, /R, a per-block statistic/);
  // An export file: its lambda and M, unless given.
  const file = JSON.stringify({ kind: 'allocation', infix: 'sub(A,D)', m: 7, lambda: 0.05, metric: 'W' });
  assert.deepEqual(allocationFromText(file, 'f'), { kind: 'expr', expr: 'sub(A,D)', m: 7, lambda: 0.05 });
  assert.deepEqual(allocationFromText(file, 'f', { lambda: 0.1 }), { kind: 'expr', expr: 'sub(A,D)', m: 7, lambda: 0.1 });
  assert.throws(() => allocationFromText('{"kind": "allocation", "infix": "W"}', 'f'), /: f: uses W, a per-weight metric terminal/);
  // Only exact rewrites: a root transform changes the allocation and must stay.
  assert.equal(toInfix(canonicalizeAllocation(parseAllocationExpr('exp(mul(D,R))'))), 'exp(mul(D,R))');
  assert.equal(toInfix(canonicalizeAllocation(parseAllocationExpr('mms(mms(add(R,A)))'))), 'mms(add(A,R))');
});

const cfg = { vocabSize: 96, dim: 32, layers: 4, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
const dense = buildLlama(cfg, initLlamaWeights(cfg, 7, 0.15));
const layers = discoverLayers(dense);
const rng = seedrandom('alloc-expr');
const calib = Array.from({ length: 8 }, () => Int32Array.from({ length: 16 }, () => Math.floor(rng() * cfg.vocabSize)));
const Xp = denseX(dense, layers, calib, { threads: 1 });
const weightOf = (l: PrunableLayer) => readLayerWeight(dense, l);

/** Expressions chosen by hand: OWL, depth, mixtures, saturating and degenerate ones. */
const HAND = ['mms(R)', 'R', 'D', 'neg(D)', 'zsn(A)', 'add(mms(R),neg(zsn(M)))', 'mul(R,A)', 'div(M,A)', 'tanh(zsn(D))', 'exp(zsn(R))', 'sub(R,R)', 'log(sub(D,D))', 'exp(sqr(sqr(exp(exp(D)))))', 'sub(exp(sqr(sqr(exp(exp(D))))),exp(sqr(sqr(exp(exp(D))))))'];

test('block statistics from an independent recomputation; depth 0..1', async () => {
  const X = await Xp;
  const b = blockStatistics(layers, weightOf, (l) => X.get(l.name)!, 5);
  assert.deepEqual(b.blocks, [0, 1, 2, 3]);
  for (const [i, blk] of b.blocks.entries()) {
    const ls = layers.filter((l) => l.block === blk);
    let abs = 0;
    let n = 0;
    let xs = 0;
    let nx = 0;
    for (const l of ls) {
      for (const v of readLayerWeight(dense, l)) (abs += Math.abs(v)), n++;
      for (const v of X.get(l.name)!) (xs += v), nx++;
    }
    close(b.stats.A[i]!, abs / n, 1e-6 * (abs / n), 'A');
    close(b.stats.M[i]!, xs / nx, 1e-6 * (xs / nx), 'M');
    close(b.stats.R[i]!, outlierRatio(ls.map((l) => wandaScores(readLayerWeight(dense, l), l.out, l.in, X.get(l.name)!)), 5), 1e-7, 'R');
    close(b.stats.D[i]!, i / 3, 1e-7, 'D');
    assert.equal(b.params[i], ls.reduce((a, l) => a + l.out * l.in, 0));
  }
  assert.ok(new Set([...b.stats.R].map((v) => v.toFixed(6))).size > 1, 'blocks differ in outlier ratio');
});

test('overall sparsity exact and span at most 2 lambda: hand-chosen and random expressions, equal and unequal blocks', async () => {
  const X = await Xp;
  // Unequal blocks: a real model's layers with block 1's MLP and block 3's attention left out.
  const partial = layers.filter((l) => !(l.block === 1 && l.name.includes('mlp')) && !(l.block === 3 && l.name.includes('self_attn')));
  const r = createRng('random allocations');
  const prims = { ...ALL_PRIMITIVES, terminals: ['R', 'A', 'M', 'D'] as const };
  const random = Array.from({ length: 40 }, (_, i) => toInfix(randomTree(r, prims, 2 + (i % 4), i % 2 ? 'grow' : 'full')));
  let fallbacks = 0;
  let spread = 0;
  for (const set of [layers, partial]) {
    const b = blockStatistics(set, weightOf, (l) => X.get(l.name)!, 5);
    assert.ok(set === layers || new Set(b.params).size > 1, 'the partial set has unequal blocks');
    for (const [s, lambda] of [[0.5, 0.08], [0.7, 0.1], [0.3, 0.15]] as const) {
      for (const e of [...HAND, ...random]) {
        const a = allocateByExpression(parseAllocationExpr(e), b, { sparsity: s, lambda });
        const sp = b.blocks.map((blk) => a.sparsity.get(blk)!);
        check(sp, b.params, s, lambda, e);
        // Per layer: the parameter-weighted mean over layers is s too.
        const per = layerSparsities(set, a.sparsity, s);
        const total = set.reduce((acc, l) => acc + l.out * l.in, 0);
        close(per.reduce((acc, v, i) => acc + v * set[i]!.out * set[i]!.in, 0) / total, s, 1e-12, `${e} per layer`);
        const scores = [...blockScores(parseAllocationExpr(e), b.stats)];
        const degenerate = scores.some((v) => !Number.isFinite(v)) || new Set(scores).size === 1;
        assert.equal(a.fallback !== null, degenerate, `${e}: ${scores}`);
        if (degenerate) fallbacks++;
        else spread++;
      }
    }
  }
  assert.ok(fallbacks >= 6 && spread >= 100, `${fallbacks} degenerate, ${spread} spread`);
});

test('mms(R) is OWL: the same block sparsities, and the same pruned model', async () => {
  const X = await Xp;
  for (const [s, lambda] of [[0.6, 0.08], [0.5, 0.05]] as const) {
    const owl = owlAllocation(layers, weightOf, (l) => X.get(l.name)!, { sparsity: s, m: 5, lambda });
    const expr = layerAllocation({ kind: 'expr', expr: 'mms(R)', m: 5, lambda }, layers, weightOf, (l) => X.get(l.name)!, s);
    for (const b of owl.blocks) close(expr.sparsity.get(b)!, owl.sparsity.get(b)!, 1e-7, `block ${b}`);
    assert.ok(Math.max(...owl.sparsity.values()) - Math.min(...owl.sparsity.values()) > 2 * lambda - 1e-9, 'OWL spans 2 lambda');
  }
  const prune = async (allocation: Parameters<typeof pruneModel>[1]['allocation']) => {
    const m = cloneModel(dense);
    const res = await pruneModel(m, { method: baselineMethod('wanda'), sparsity: 0.6, pattern: parsePattern('unstructured', 0.6), allocation, windows: calib, threads: 1 });
    return { m, res };
  };
  const a = await prune({ kind: 'owl', m: 5, lambda: 0.08 });
  const b = await prune(parseAllocation('mms(R)', 5, 0.08));
  assert.equal(b.res.allocation.name, 'expr(mms(R),M=5,λ=0.08)');
  assert.deepEqual(b.res.layers.map((l) => l.pruned), a.res.layers.map((l) => l.pruned));
  for (const l of layers) assert.deepEqual(readLayerWeight(b.m, l), readLayerWeight(a.m, l), l.name);
});

test('prune with an expression: overall sparsity measured from the model zeros is s to the per-row rounding', async () => {
  for (const e of ['add(mms(R),neg(zsn(M)))', 'D', 'sub(R,R)']) {
    const m = cloneModel(dense);
    const res = await pruneModel(m, { method: baselineMethod('wanda'), sparsity: 0.6, pattern: parsePattern('unstructured', 0.6), allocation: parseAllocation(e, 5, 0.1), windows: calib, threads: 1 });
    for (const l of layers) {
      // Each row prunes floor(in * s_layer) weights.
      const sb = res.allocation.blocks.find((x) => x.block === l.block)?.sparsity ?? 0.6;
      assert.equal(res.layers.find((x) => x.name === l.name)!.pruned, Math.floor(l.in * sb) * l.out, `${e} ${l.name}`);
    }
    assertOverallSparsity(m, 0.6, e);
    if (e === 'sub(R,R)') assert.match(res.allocation.fallback ?? '', /same score/);
    else assert.ok(new Set(res.allocation.blocks.map((x) => x.sparsity.toFixed(6))).size > 1, e);
  }
});
