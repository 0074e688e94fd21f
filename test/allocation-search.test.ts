/**
 * `search --evolve allocation` end to end on a tiny LLaMA built on the fly: the GP evolves
 * allocation expressions for a fixed metric with real workers and a real SQLite log; a run
 * SIGKILLed part way and resumed equals an uninterrupted one; `export` writes the best
 * allocation and `prune` applies it, with the overall sparsity measured from the written
 * model's zeros and its perplexity equal to the search's fitness.
 */
import { searchFixture } from './support/search-fixture.ts';
import { sympruneSync } from './support/spawn-cli.ts';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { loadModel } from '../src/onnx/model-io.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';
import { parseAllocationExpr } from '../src/search-space/index.ts';
import { structuredTokens } from './support/token-stream.ts';
import { assertConsistent, dump, sameSearch, searchKilledAt } from './support/search-log.ts';
import { assertOverallSparsity } from './support/zeros.ts';
import { assertRefusal, CliRunner } from './support/cli-runner.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-alloc-search-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const { ready } = searchFixture(dir, { layers: 4, weightSeed: 3, fitTokens: 4096, calibTokens: 4096 });

const data = ['--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'), '--nsamples', '8', '--seqlen', '32'];
const METRIC = 'mul(W,sqrt(X))';
const searchArgs = (db: string, extra: string[] = []) => [
  'search', '--model', dir, ...data, '--seed', '3', '--evolve', 'allocation', '--metric', METRIC, '--owl-lambda', '0.1', '--sparsity', '0.6', '--seed-known',
  '--population', '6', '--iterations', '6', '--batch', '2', '--eval-tokens', '1024', '--baselines', 'wanda', '--db', db, '--json', ...extra,
];
const cli = (args: string[]) => sympruneSync(args);

test('an allocation search runs, logs, resumes, exports; prune applies the export', async () => {
  await ready;
  const refDb = join(dir, 'ref.sqlite');
  const ref = cli(searchArgs(refDb, ['--workers', '1']));
  assert.equal(ref.status, 0, ref.stderr);
  const summary = JSON.parse(ref.stdout.trim().split('\n').pop()!);
  assert.equal(summary.status, 'finished');
  const log = dump(refDb);
  assertConsistent(log);
  const d = new Database(refDb, { readonly: true });
  const config = JSON.parse((d.prepare('SELECT config FROM runs').pluck().get() as string));
  d.close();
  assert.deepEqual(config.evolveAllocation, { metric: METRIC, m: 5, lambda: 0.1 });
  assert.equal(config.gp.language, 'allocation');
  // Every individual is an allocation expression; the search found more than its seed.
  for (const r of log.individuals) parseAllocationExpr(r.infix as string);
  assert.ok(log.individuals.length >= 10, `${log.individuals.length} individuals`);
  // Yardsticks: the metric with the uniform allocation is Wanda (same masks, same perplexity);
  // OWL's seed mms(R) gets exactly the metric+owl baseline's perplexity.
  const base = Object.fromEntries(log.baselines.map((b) => [b.method, b.ppl as number]));
  assert.equal(base.metric, base.wanda);
  const owl = log.individuals.find((r) => r.infix === 'mms(R)')!;
  assert.equal(owl.fidelity, 'full');
  assert.equal(owl.fitness, base['metric+owl']);
  assert.notEqual(base['metric+owl'], base.metric);
  const fitnesses = new Set(log.individuals.filter((r) => r.invalid === null).map((r) => r.fitness));
  assert.ok(fitnesses.size >= 3, 'allocations differ in perplexity');

  // Killed once evaluations are committed, resumed: the same search as the uninterrupted one.
  const db = join(dir, 'killed.sqlite');
  assert.ok(await searchKilledAt(searchArgs(db, ['--workers', '1']), db, 6), 'the run reached 6 evaluations before it finished');
  const res = cli(['search', '--db', db, '--resume', '--json', '--workers', '1']);
  assert.equal(res.status, 0, res.stderr);
  sameSearch(dump(db), log);
  // A resumed run keeps what it evolves: the same flags are accepted, other ones named.
  const same = cli(['search', '--db', refDb, '--resume', '--evolve', 'allocation', '--metric', METRIC, '--owl-lambda', '0.1', '--json']);
  assert.equal(same.status, 0, same.stderr);
  const other = cli(['search', '--db', refDb, '--resume', '--evolve', 'allocation', '--metric', METRIC, '--owl-lambda', '0.2']);
  assert.equal(other.status, 2);
  assert.match(other.stderr, /--resume: --evolve allocation \{"lambda":0.2,"m":5,"metric":"mul\(W,sqrt\(X\)\)"\} \(the run has \{"lambda":0.1,/);

  // export: the best allocation with its metric, lambda and M.
  const best = join(dir, 'best.json');
  const ex = cli(['export', '--db', refDb, '--format', 'json', '--out', best]);
  assert.equal(ex.status, 0, ex.stderr);
  const file = JSON.parse(readFileSync(best, 'utf8'));
  const top = [...log.individuals].filter((r) => r.invalid === null).sort((a, b) => (a.fitness as number) - (b.fitness as number) || (a.id as number) - (b.id as number))[0]!;
  assert.equal(file.kind, 'allocation');
  assert.equal(file.infix, top.infix);
  assert.equal(file.metric, METRIC);
  assert.equal(file.lambda, 0.1);
  assert.equal(file.fitness.ppl, top.fitness);

  // prune applies it: one-shot statistics as in the search, so the same masks and perplexity.
  const out = join(dir, 'pruned');
  const pr = cli(['prune', '--model', dir, '--metric', best, '--allocation', best, '--sparsity', '0.6', '--calibration', 'one-shot', '--data', join(dir, 'calib.bin'), '--nsamples', '8', '--seqlen', '32', '--threads', '1', '--out', out, '--json']);
  assert.equal(pr.status, 0, pr.stderr);
  const report = JSON.parse(readFileSync(join(out, 'prune.json'), 'utf8'));
  assert.equal(report.allocation.name, `expr(${top.infix},M=5,λ=0.1)`);
  const pruned = await loadModel(join(out, 'model.onnx'));
  assertOverallSparsity(pruned, 0.6, 'the pruned model written by prune');
  const ev = await PerplexityEvaluator.create(pruned, { threads: 1 });
  const p = await ev.evaluate(Int32Array.from(structuredTokens(4096, 1)), { seqlen: 32, maxTokens: 1024 });
  await ev.release();
  assert.ok(Math.abs(p.ppl - (top.fitness as number)) < 1e-4 * p.ppl, `prune ${p.ppl} vs search ${top.fitness}`);
});

test('bad allocation searches: one line, exit 2, no database', async (t) => {
  await ready;
  const runner = await CliRunner.start(process.cwd());
  t.after(() => runner.stop());
  const db = join(dir, 'never.sqlite');
  const base = ['search', '--model', dir, ...data, '--population', '4', '--iterations', '2', '--db', db];
  const cases: [string[], RegExp][] = [
    [['--evolve', 'allocation'], /--evolve allocation needs --metric/],
    [['--metric', 'W'], /--metric: a fixed metric goes with --evolve allocation/],
    [['--evolve', 'allocation', '--metric', 'mul(W,R)'], /--metric mul\(W,R\): .*R, a per-block statistic/],
    [['--evolve', 'allocation', '--metric', 'W', '--allocation', 'owl'], /the allocation is what is evolved; leave out --allocation/],
    [['--evolve', 'allocation', '--metric', 'W', '--terminals', 'R,W'], /allocation terminals must be a non-empty subset of R, A, M, D/],
    [['--evolve', 'allocation', '--metric', 'W', '--sparsity', '0.9'], /--sparsity 0.9 with --owl-lambda 0.08: a block may move up to 2·lambda/],
    [['--evolve', 'allocation', '--metric', 'W', '--pattern', '2:4'], /needs --pattern unstructured/],
    [['--evolve', 'allocations', '--metric', 'W'], /--evolve/],
  ];
  for (const [extra, re] of cases) {
    const argv = [...base, ...extra];
    assertRefusal(await runner.run(argv), argv, re);
    assert.equal(existsSync(db), false, `${extra.join(' ')} created the database`);
  }
});

test('search --allocation EXPR: a metric search masks its baselines with the expression allocation', async () => {
  await ready;
  const db = join(dir, 'fixed.sqlite');
  const expr = 'add(mms(R),neg(D))';
  const r = cli(['search', '--model', dir, ...data, '--seed', '5', '--population', '2', '--iterations', '0', '--batch', '2', '--workers', '1', '--eval-tokens', '1024', '--baselines', 'wanda', '--sparsity', '0.6', '--allocation', expr, '--owl-lambda', '0.1', '--db', db, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const d = new Database(db, { readonly: true });
  const base = d.prepare(`SELECT ppl FROM baselines WHERE method = 'wanda'`).pluck().get() as number;
  const config = JSON.parse(d.prepare('SELECT config FROM runs').pluck().get() as string);
  d.close();
  assert.deepEqual(config.allocation, { kind: 'expr', expr, m: 5, lambda: 0.1 });
  // The same pruning by `prune` (one-shot statistics, as the search's), evaluated on the fitness tokens.
  const out = join(dir, 'fixed-pruned');
  const pr = cli(['prune', '--model', dir, '--method', 'wanda', '--allocation', expr, '--owl-lambda', '0.1', '--sparsity', '0.6', '--calibration', 'one-shot', '--data', join(dir, 'calib.bin'), '--nsamples', '8', '--seqlen', '32', '--threads', '1', '--out', out, '--json']);
  assert.equal(pr.status, 0, pr.stderr);
  const blocks = JSON.parse(readFileSync(join(out, 'prune.json'), 'utf8')).allocation.blocks as { sparsity: number }[];
  assert.ok(new Set(blocks.map((b) => b.sparsity.toFixed(6))).size > 1, 'the blocks differ in sparsity');
  const pruned = await loadModel(join(out, 'model.onnx'));
  const ev = await PerplexityEvaluator.create(pruned, { threads: 1 });
  const p = await ev.evaluate(Int32Array.from(structuredTokens(4096, 1)), { seqlen: 32, maxTokens: 1024 });
  await ev.release();
  assert.ok(Math.abs(base - p.ppl) < 1e-4 * p.ppl, `search baseline ${base} vs prune ${p.ppl}`);
});
