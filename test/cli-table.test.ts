/**
 * The cases of issue 10's table, each on the bundled model through the real CLI (one
 * long-lived child, see test/support/cli-child.ts): bad input ends in one `symprune:` line,
 * exit 2 and nothing written; output folders are not trampled; a degenerate metric is
 * named. Racing searches and changed-under-a-run resumes are in cli-search-guard.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BUNDLED_MODEL_DIR } from '../src/model/load.ts';
import { CliRunner, assertRefusal, type CliResult } from './support/cli-runner.ts';
import { snapshot } from './support/fs-snapshot.ts';

let dir = '';
let runner: CliRunner;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-table-'));
  fs.writeFileSync(path.join(dir, 'afile'), 'not a folder\n');
  fs.writeFileSync(path.join(dir, 'existing.safetensors'), 'a file\n');
  fs.mkdirSync(path.join(dir, 'some-folder.safetensors'));
  fs.mkdirSync(path.join(dir, 'existing-folder'));
  fs.writeFileSync(path.join(dir, 't.txt'), 'the quick brown fox jumps over the lazy dog. '.repeat(40));
  runner = await CliRunner.start(dir);
});

after(async () => {
  await runner?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Exit 2, one `symprune:` line matching `re`, nothing on stdout, and the sandbox unchanged. */
async function refused(argv: string[], re: RegExp): Promise<void> {
  const before = snapshot(dir);
  const r = await runner.run(argv);
  assertRefusal(r, argv, re);
  assert.equal(r.stdout, '');
  assert.equal(snapshot(dir), before, `${JSON.stringify(argv)} wrote something`);
}

test('seqlen past the model positions: eval, prune, stats, baselines and search refuse it before any work', { timeout: 300_000 }, async () => {
  const re = /--seqlen 257: the model has 256 positions; use at most 256/;
  await refused(['eval', '--seqlen', '257', '--max-tokens', '2048'], re);
  await refused(['prune', '--method', 'wanda', '--seqlen', '257', '--out', 'o'], re);
  await refused(['stats', '--seqlen', '257', '--out', 's.safetensors'], re);
  await refused(['baselines', '--seqlen', '257'], re);
  await refused(['search', '--seqlen', '257', '--db', 'x.sqlite'], re); // no database left behind
});

test('bad flags and paths from the table: one line, exit 2, nothing written', { timeout: 300_000 }, async () => {
  for (const [flag, value] of [['--population', '0'], ['--sparsity', '1.2'], ['--pattern', '3:4'], ['--batch', '0'], ['--margin', '-1'], ['--seed', 'abc'], ['--model', 'afile']] as const)
    await refused(['search', flag, value, '--db', 'x.sqlite'], flag === '--model' ? /afile is not an ONNX model/ : new RegExp(flag));
  await refused(['search', '--workers', '64', '--db', 'x.sqlite'], /--workers 64: this machine has \d+ cores; use at most \d+/);
  await refused(['prune', '--method', 'magnitude', '--eval', '--eval-tokens=-5', '--out', 'o'], /--eval-tokens -5: must be an integer of at least 2/);
  await refused(['prune', '--method', 'magnitude', '--out', ''], /--out: empty value/);
  await refused(['prune', '--method', 'magnitude', '--out', '/proc/x'], /--out \/proc\/x: cannot create anything in \/proc/);
  await refused(['stats', '--out', '/proc/x/s.safetensors'], /--out \/proc\/x\/s\.safetensors: cannot create anything in \/proc/);
  await refused(['search', '--db', '/proc/x/y.sqlite'], /--db \/proc\/x\/y\.sqlite: cannot create anything in \/proc/);
  await refused(['prune', '--method', 'magnitude', '--out', 'afile/sub'], /--out afile\/sub: .*afile is a file, not a folder/);
  await refused(['stats', '--out', 'existing.safetensors/s.safetensors'], /existing\.safetensors is a file, not a folder/);
  await refused(['prune', '--metric', 'mul(W,G)', '--stats', 'some-folder.safetensors', '--out', 'o'], /--stats some-folder\.safetensors: is a folder, expected a file/);
  await refused(['search', '--stats', 'some-folder.safetensors', '--db', 'x.sqlite'], /--stats some-folder\.safetensors: is a folder, expected a file/);
  await refused(['tokenizer', 'train', '--vocab', '300', '--data', 't.txt', '--out', 'existing-folder'], /--out existing-folder: is a folder, expected a file/);
});

test('train refuses a folder holding another model unless --force', { timeout: 120_000 }, async () => {
  const copy = path.join(dir, 'copy-of-brown-llama');
  fs.cpSync(BUNDLED_MODEL_DIR, copy, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(BUNDLED_MODEL_DIR, '..', 'brown-llama.train.json'), 'utf8'));
  cfg.tokenizer.vocabSize = 512;
  cfg.model.vocabSize = 512;
  fs.writeFileSync(path.join(dir, 'small.train.json'), JSON.stringify(cfg));
  await refused(['train', '--config', 'small.train.json', '--out', copy, '--stop-after', '0'], /--out .*copy-of-brown-llama: holds model\.onnx, tokenizer\.json, card\.json of another model; .*--force/);
  assert.deepEqual(fs.readFileSync(path.join(copy, 'tokenizer.json')), fs.readFileSync(path.join(BUNDLED_MODEL_DIR, 'tokenizer.json')));
  fs.rmSync(copy, { recursive: true });
});

test('prune: a constant metric is named in one warning; a replaced model is said; leftovers of an interrupted write are cleaned', { timeout: 300_000 }, async () => {
  const out = path.join(dir, 'pruned');
  const first: CliResult = await runner.run(['prune', '--metric', 'log(sub(W,W))', '--out', out]);
  assert.equal(first.code, 0, first.stderr);
  const warn = first.stderr.split('\n').filter(Boolean);
  assert.equal(warn.length, 1, first.stderr);
  assert.match(warn[0]!, /^symprune: warning: metric log\(sub\(W,W\)\): scores are constant within every row in 28 of 28 layers .*the search rejects such metrics as invalid/);
  // A write killed before its rename left a temporary file; one of a live writer must stay.
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  const stale = path.join(out, `model.onnx.tmp-${gone}-1`);
  const live = path.join(out, `model.onnx.tmp-${process.pid}-1`);
  fs.writeFileSync(stale, 'half a model');
  fs.writeFileSync(live, 'a write in progress');
  const again = await runner.run(['prune', '--method', 'magnitude', '--out', out]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /^symprune: note: replacing the model in .*pruned \(model\.onnx\)\n$/);
  assert.ok(!fs.existsSync(stale), 'the dead writer\'s temporary file is removed');
  assert.ok(fs.existsSync(live), 'a live writer\'s temporary file is left alone');
  fs.rmSync(out, { recursive: true });
});
