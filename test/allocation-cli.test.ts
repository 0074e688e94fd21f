/** `prune --allocation EXPR|FILE` as a user runs it (spawned, tiny model): applied, reported, and bad input refused before any work. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { symprune } from './support/spawn-cli.ts';
import { assertRefusal, CliRunner } from './support/cli-runner.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-alloc-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const cfg = { vocabSize: 4096, dim: 32, layers: 3, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
const dir = path.join(tmp, 'tiny');
const ready = (async () => {
  fs.mkdirSync(dir);
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 5, 0.15)), path.join(dir, 'model.onnx'));
  fs.copyFileSync(path.join(ROOT, 'models', 'brown-llama', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
})();
const common = (sparsity = '0.6') => ['prune', '--model', dir, '--method', 'wanda', '--sparsity', sparsity, '--nsamples', '4', '--seqlen', '16', '--threads', '1', '--json'];

test('prune --allocation EXPR and FILE: prune.json reports each block, the file equals the expression', async () => {
  await ready;
  const out1 = path.join(tmp, 'a');
  const r = await symprune(...common(), '--allocation', 'add(mms(R),neg(D))', '--owl-lambda', '0.1', '--out', out1);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(fs.readFileSync(path.join(out1, 'prune.json'), 'utf8'));
  assert.equal(rep.allocation.name, 'expr(add(mms(R),neg(D)),M=5,λ=0.1)');
  assert.equal(rep.allocation.blocks.length, 3);
  const sp = rep.allocation.blocks.map((b: { sparsity: number }) => b.sparsity);
  assert.ok(Math.abs(sp.reduce((a: number, b: number) => a + b, 0) / 3 - 0.6) < 1e-8, `${sp}`);
  assert.ok(Math.max(...sp) - Math.min(...sp) <= 0.2 + 1e-9 && Math.max(...sp) - Math.min(...sp) > 0.01, `${sp}`);
  for (const b of rep.allocation.blocks) for (const k of ['score', 'outlierRatio', 'meanAbsW', 'meanX', 'depth']) assert.equal(typeof b[k], 'number', k);

  const file = path.join(tmp, 'alloc.json');
  fs.writeFileSync(file, JSON.stringify({ kind: 'allocation', infix: 'add(mms(R),neg(D))', lambda: 0.1, m: 5, metric: 'mul(W,sqrt(X))' }));
  const out2 = path.join(tmp, 'b');
  // --metric reads the metric an allocation file names.
  const r2 = await symprune(...common().filter((x) => x !== '--method' && x !== 'wanda'), '--metric', file, '--allocation', file, '--out', out2);
  assert.equal(r2.code, 0, r2.stderr);
  const rep2 = JSON.parse(fs.readFileSync(path.join(out2, 'prune.json'), 'utf8'));
  assert.deepEqual(rep2.allocation, rep.allocation);
  assert.deepEqual(rep2.layers.map((l: { pruned: number }) => l.pruned), rep.layers.map((l: { pruned: number }) => l.pruned));
});

test('bad allocations: one line, exit 2, nothing written', async (t) => {
  await ready;
  const runner = await CliRunner.start(ROOT);
  t.after(() => runner.stop());
  const bad = path.join(tmp, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ kind: 'allocation', infix: 'mul(W,R)' }));
  const cases: [string[], RegExp][] = [
    [['--allocation', 'mul(W,R)'], /--allocation mul\(W,R\): uses W, a per-weight metric terminal/],
    [['--allocation', 'foo(R)'], /unknown operator or terminal 'foo'/],
    [['--allocation', 'owls'], /expected uniform, owl, or an expression over R, A, M, D/],
    [['--allocation', 'mms(R'], /--allocation mms\(R: missing '\)'/],
    [['--allocation', 'missing.json'], /--allocation missing.json: file not found/],
    [['--allocation', bad], /bad.json: uses W/],
    [['--allocation', 'mms(R)', '--pattern', '2:4'], /needs --pattern unstructured/],
    [['--allocation', 'mms(R)', '--owl-lambda', '0.5'], /--owl-lambda/],
  ];
  for (const [extra, re] of cases) {
    const out = path.join(tmp, 'never');
    const argv = [...common(extra.includes('2:4') ? '0.5' : '0.6'), '--out', out, ...extra];
    assertRefusal(await runner.run(argv), argv, re);
    assert.equal(fs.existsSync(out), false, `${extra.join(' ')} created ${out}`);
  }
});

test('baselines: a metric+alloc row with mms(R) is the wanda+owl row; +alloc without an expression refused', async () => {
  await ready;
  const common = ['baselines', '--model', dir, '--nsamples', '4', '--seqlen', '16', '--threads', '1', '--eval-tokens', '512', '--task', 'none', '--json', '--sparsity', '0.6'];
  const r = await symprune(...common, '--metric', 'mul(abs(W),sqrt(X))', '--allocation', 'mms(R)', '--methods', 'wanda,wanda+owl,metric+alloc');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const ppl = (m: string) => j.methods.find((x: { method: string }) => x.method === m).ppl;
  assert.equal(ppl('metric+alloc'), ppl('wanda+owl'));
  assert.notEqual(ppl('wanda'), ppl('wanda+owl'));
  assert.equal(j.allocation.expr, 'mms(R)');
  const bad = await symprune(...common, '--methods', 'wanda+alloc');
  assertRefusal({ code: bad.code ?? -1, stdout: bad.stdout, stderr: bad.stderr }, common, /a \+alloc row needs --allocation EXPR or FILE/);
});
