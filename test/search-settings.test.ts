/**
 * Several settings for one search (`--sparsity 0.5,0.7 --pattern unstructured,2:4`, or
 * `--settings`): the rule that builds the list, and bad lists refused by the real CLI with
 * one line and exit 2 before any file is made.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crossSettings, parseSettingsList, settingLabel, settingsFields, checkSettings, runSettings } from '../src/search/settings.ts';
import { settingsFromFlags } from '../src/cli/commands/search.ts';
import { InputError } from '../src/errors.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import Database from 'better-sqlite3';
import { openDatabase, SCHEMA_VERSION } from '../src/store/schema.ts';
import { RunStore } from '../src/store/store.ts';
import { CliRunner, assertRefusal } from './support/cli-runner.ts';
import { snapshot } from './support/fs-snapshot.ts';
import { structuredTokens } from './support/token-stream.ts';

test('--sparsity x --pattern: every unstructured pair, each N:M pattern once at 50%', () => {
  const labels = (xs: { sparsity: number; pattern: string }[]): string[] => xs.map(settingLabel);
  assert.deepEqual(labels(crossSettings([0.5, 0.7], ['unstructured', '2:4'])), ['0.5:unstructured', '0.7:unstructured', '2:4']);
  assert.deepEqual(labels(crossSettings([0.5], ['2:4', '4:8'])), ['2:4', '4:8']);
  assert.deepEqual(labels(crossSettings([0.6], ['unstructured'])), ['0.6:unstructured']);
  assert.throws(() => crossSettings([0.7], ['2:4']), /sparsity 0\.7: pattern 2:4 prunes exactly 50%/);
  assert.throws(() => crossSettings([0.5, 0.7], ['2:4', '4:8']), /0\.7/);
  assert.throws(() => crossSettings([0.5], ['2:4', '2:4']), /2:4 given twice/);
  assert.deepEqual(labels(parseSettingsList('0.5, 0.7:unstructured,2:4')), ['0.5:unstructured', '0.7:unstructured', '2:4']);
  assert.throws(() => parseSettingsList('0.5,,2:4', '--settings'), InputError);
  assert.throws(() => parseSettingsList('x:unstructured', '--settings'), /x:unstructured is not SPARSITY/);
});

test('one setting keeps the old configuration shape; several list every setting, the first as sparsity/pattern', () => {
  assert.deepEqual(settingsFields([{ sparsity: 0.6, pattern: 'unstructured' }]), { sparsity: 0.6, pattern: 'unstructured' });
  const two = settingsFields([{ sparsity: 0.7, pattern: 'unstructured' }, { sparsity: 0.5, pattern: '2:4' }]);
  assert.equal(two.sparsity, 0.7);
  assert.equal(runSettings(two).length, 2);
  assert.deepEqual(runSettings({ sparsity: 0.6, pattern: '4:8' }), [{ sparsity: 0.6, pattern: '4:8' }]);
  // Flags naming one setting give only what was typed (a resumed run compares those) and settings: null.
  assert.deepEqual(settingsFromFlags({ sparsity: [0.6] }), { sparsity: 0.6, settings: null });
  assert.deepEqual(settingsFromFlags({}), {});
  assert.deepEqual(settingsFromFlags({ settings: '2:4' }), { sparsity: 0.5, pattern: '2:4', settings: null });
  assert.equal(settingsFromFlags({ sparsity: [0.5, 0.7] }).settings?.length, 2);
  assert.throws(() => settingsFromFlags({ settings: '0.5', sparsity: [0.5] }), /not both/);
});

test('checkSettings refuses a duplicate or invalid setting in the list', () => {
  const base = { modelSha256: 'x', mode: 'steady-state' as const, population: 4, batch: 2, iterations: 1, generations: null, seed: 0, fitnessData: 'f', evalTokens: 64, shortFraction: 0.5, margin: 0, seqlen: 8, calibData: 'c', nsamples: 1, stats: null, seedKnown: false, baselines: [] };
  const ok = { ...base, ...settingsFields(parseSettingsList('0.5,2:4')) };
  checkSettings(ok);
  assert.throws(() => checkSettings({ ...base, ...settingsFields(parseSettingsList('0.5,0.5:unstructured')) }), /setting 0\.5:unstructured given twice/);
  assert.throws(() => checkSettings({ ...base, ...settingsFields(parseSettingsList('0.5,1.5')) }), /strictly between 0 and 1/);
  assert.throws(() => checkSettings({ ...base, ...settingsFields(parseSettingsList('0.5,0.7:2:4')) }), /prunes exactly 50%/);
  assert.throws(() => checkSettings({ ...base, ...settingsFields(parseSettingsList('0.5,0.6:diagonal')) }), /expected unstructured, 2:4 or 4:8/);
  assert.throws(() => checkSettings({ ...ok, allocation: { kind: 'owl', m: 5, lambda: 0.08 } }), /needs unstructured/);
});

let dir = '';
let runner: CliRunner;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-settings-'));
  const cfg = { vocabSize: 64, dim: 32, layers: 1, heads: 4, kvHeads: 2, ffn: 64, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 1, 0.2)), path.join(dir, 'model.onnx'));
  fs.writeFileSync(path.join(dir, 'fit.bin'), structuredTokens(1024, 1));
  runner = await CliRunner.start(dir);
});

after(async () => {
  await runner?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('bad settings: one line, exit 2, no file made', async () => {
  const common = ['search', '--model', 'model.onnx', '--fitness-data', 'fit.bin', '--data', 'fit.bin', '--db', 'out/run.sqlite', '--population', '2', '--iterations', '0'];
  const cases: [string[], RegExp][] = [
    [['--sparsity', '0.5,0.5'], /--sparsity 0\.5,0\.5: 0\.5 given twice/],
    [['--sparsity', '0.5,'], /--sparsity 0\.5,: empty item/],
    [['--sparsity', '0.5,1'], /--sparsity 1: must be a number strictly between 0 and 1/],
    [['--sparsity', '0.5,abc'], /--sparsity abc/],
    [['--pattern', 'unstructured,3:4'], /--pattern 3:4/],
    [['--pattern', 'unstructured,unstructured'], /--pattern .*unstructured given twice/],
    [['--pattern', '2:4', '--sparsity', '0.5,0.7'], /--sparsity 0\.7: pattern 2:4 prunes exactly 50%/],
    [['--settings', '0.5,0.5:unstructured'], /--settings: setting 0\.5:unstructured given twice/],
    [['--settings', '0.5,0.7:2:4'], /--settings: setting 0\.7:2:4: .*prunes exactly 50%/],
    [['--settings', '0.5,-0.2'], /--settings: setting -0\.2:unstructured: sparsity must be a number strictly between 0 and 1/],
    [['--settings', '0.5;0.7'], /--settings 0\.5;0\.7: 0\.5;0\.7 is not SPARSITY/],
    [['--settings', '0.5,0.7', '--sparsity', '0.5'], /give --settings, or --sparsity and --pattern, not both/],
    [['--sparsity', '0.5,0.7', '--pattern', '2:4,unstructured', '--allocation', 'owl'], /--allocation owl: needs unstructured/],
  ];
  const before = snapshot(dir);
  for (const [extra, re] of cases) {
    const argv = [...common, ...extra];
    assertRefusal(await runner.run(argv), argv, re);
    assert.equal(snapshot(dir), before, `${extra.join(' ')} left files behind`);
  }
});

test('an old database (the committed reference run) migrates: every evaluation gets its run\'s setting and masks, the fitness helpers answer as before', () => {
  const file = path.join(dir, 'old.sqlite');
  fs.copyFileSync('runs/reference/search.sqlite', file);
  // What the helpers computed before the migration, by their old SQL on the untouched file.
  const raw = new Database(file, { readonly: true });
  const oldBestBefore = raw.prepare(`SELECT MIN(e.ppl) FROM evaluations e JOIN individuals i ON i.run = e.run AND i.id = e.individual WHERE e.run = 1 AND e.fidelity = 'short' AND e.status = 'ok' AND i.step < 40`).pluck().get();
  const oldRatio = raw
    .prepare(`SELECT s.ppl AS short, f.ppl AS full FROM evaluations s JOIN evaluations f ON f.run = s.run AND f.individual = s.individual AND f.fidelity = 'full' AND f.status = 'ok' WHERE s.run = 1 AND s.fidelity = 'short' AND s.status = 'ok' ORDER BY s.ppl, s.individual LIMIT 1`)
    .get();
  const oldRows = raw.prepare('SELECT id, individual, fidelity, ppl, status, reused_from FROM evaluations ORDER BY id').all();
  raw.close();

  const db = openDatabase(file);
  try {
    assert.equal(db.prepare('SELECT MAX(version) FROM schema_version').pluck().get(), SCHEMA_VERSION);
    assert.deepEqual(db.prepare('SELECT id, individual, fidelity, ppl, status, reused_from FROM evaluations ORDER BY id').all(), oldRows);
    assert.deepEqual(db.prepare('SELECT DISTINCT setting FROM evaluations').pluck().all(), ['0.5:unstructured']);
    assert.equal(db.prepare('SELECT COUNT(*) FROM evaluations e JOIN individuals i ON i.run = e.run AND i.id = e.individual WHERE e.fingerprint IS NOT i.fingerprint').pluck().get(), 0);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
    const store = RunStore.open(db, 1);
    assert.deepEqual(store.settings, [settingLabel({ sparsity: 0.5, pattern: 'unstructured' })]);
    assert.equal(store.bestShortPplBefore(40), oldBestBefore);
    assert.deepEqual(store.bestShortWithFull(), oldRatio);
    assert.equal(store.evaluation(1, 'short')!.setting, '0.5:unstructured');
  } finally {
    db.close();
  }
});
