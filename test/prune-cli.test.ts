/**
 * `symprune prune | baselines | stats` as a user runs them: spawned processes on a tiny
 * model folder (built LLaMA + a small trained BPE tokenizer) in a temporary directory.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { loadModel, saveModel } from '../src/onnx/model-io.ts';
import { makeModel, node, valueInfo } from '../src/onnx/graph-build.ts';
import { DataType } from '../src/onnx/proto.ts';
import { floatTensor } from '../src/onnx/tensor.ts';
import { saveTokenizerJson, trainBpe } from '../src/data/bpe-train.ts';
import { splitText } from '../src/data/splits.ts';
import { discoverLayers, readLayerWeight } from '../src/prune/discover.ts';
import { writeStatsFile } from '../src/prune/stats-file.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';
import { loadTokens } from '../src/data/dataset.ts';
import { symprune, type CliRun } from './support/spawn-cli.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-cli-'));
const modelDir = path.join(tmp, 'tiny');
const modelFile = path.join(modelDir, 'model.onnx');
const cfg = { vocabSize: 300, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64, ropeTheta: 10000, normEps: 1e-6 };
const calibBin = path.join(tmp, 'calib.bin');
const CAL = ['--nsamples', '8', '--seqlen', '16', '--threads', '1'];
/** Pre-tokenized calibration data (nanoGPT .bin), so spawned runs skip tokenizing brown:calib. */
const CAL_BIN = [...CAL, '--data', calibBin];

before(async () => {
  fs.mkdirSync(modelDir, { recursive: true });
  saveTokenizerJson(trainBpe(splitText('calib').slice(0, 30000), { vocabSize: cfg.vocabSize }), path.join(modelDir, 'tokenizer.json'));
  await saveModel(buildLlama(cfg, initLlamaWeights(cfg, 3, 0.15)), modelFile);
  const ids = await loadTokens('brown:calib', { tokenizerPath: path.join(modelDir, 'tokenizer.json') });
  fs.writeFileSync(calibBin, Uint16Array.from(ids.subarray(0, 20000)));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));


/** Exit code 2 and exactly one line on stderr matching `re`. */
function assertBadInput(r: CliRun, re: RegExp): void {
  assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, /^symprune: /);
  assert.match(lines[0]!, re);
}

test('prune --method wanda writes model.onnx, tokenizer.json and prune.json; the written model has the reported perplexity', async () => {
  const out = path.join(tmp, 'wanda');
  const r = await symprune('prune', '--model', modelDir, '--method', 'wanda', '--sparsity', '0.5', ...CAL, '--out', out, '--eval', '--eval-tokens', '1600', '--task', 'none', '--json');
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'prune.json'), 'utf8')).layers, report.layers);
  assert.equal(report.method, 'wanda');
  assert.equal(report.pattern, 'unstructured');
  assert.equal(report.calibration.mode, 'sequential');
  assert.equal(report.calibration.data, 'brown:calib');
  assert.equal(report.calibration.nsamples, 8);
  assert.equal(report.achieved.sparsity, 0.5);
  assert.equal(report.layers.length, 14);
  for (const l of report.layers) assert.equal(l.rowMin, 0.5);
  assert.deepEqual(fs.readFileSync(path.join(out, 'tokenizer.json')), fs.readFileSync(path.join(modelDir, 'tokenizer.json')));
  // The written model: half of every layer is zero, and its perplexity is the one in prune.json.
  const m = await loadModel(path.join(out, 'model.onnx'));
  for (const l of discoverLayers(m)) assert.equal(readLayerWeight(m, l).filter((v) => v === 0).length, l.out * l.in / 2, l.name);
  const tokens = await loadTokens('brown:test', { tokenizerPath: path.join(modelDir, 'tokenizer.json'), vocabSize: cfg.vocabSize });
  const ev = await PerplexityEvaluator.create(m, { threads: 1 });
  const p = await ev.evaluate(tokens, { seqlen: 16, maxTokens: 1600 });
  await ev.release();
  assert.equal(report.eval.ppl, p.ppl);
  // human-readable summary without --json
  const r2 = await symprune('prune', '--model', modelFile, '--method', 'magnitude', '--pattern', '2:4', '--out', path.join(tmp, 'mag24'));
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stdout, /pruned 14 layers with magnitude \(2:4, sequential\): 50\.00% of/);
});

test('stats writes G and X of every layer; prune --stats uses them without calibration data', async () => {
  const file = path.join(tmp, 'stats.safetensors');
  const r = await symprune('stats', '--model', modelDir, ...CAL_BIN, '--out', file, '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).layers, 14);
  const out = path.join(tmp, 'pz');
  const p = await symprune('prune', '--model', modelDir, '--metric', 'mul(abs(mul(W,W)),mms(G))', '--stats', file, '--data', '/nonexistent.txt', '--out', out, '--json');
  assert.equal(p.code, 0, p.stderr);
  const rep = JSON.parse(p.stdout);
  assert.equal(rep.metric.infix.replace(/\s/g, ''), 'mul(abs(mul(W,W)),mms(G))');
  assert.equal(rep.calibration.data, null, 'no calibration data read');
  assert.equal(rep.calibration.statsFile, file);
});

test('baselines --json: dense and every method', async () => {
  const r = await symprune('baselines', '--model', modelDir, '--pattern', '4:8', ...CAL_BIN, '--eval-tokens', '800', '--task', 'none', '--json');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.pattern, '4:8');
  assert.ok(j.dense.ppl > 1);
  assert.deepEqual(j.methods.map((m: { method: string }) => m.method), ['magnitude', 'wanda', 'gblm', 'ria', 'pruner-zero', 'random', 'sparsegpt']);
  for (const m of j.methods) {
    assert.equal(m.sparsity, 0.5, m.method);
    assert.ok(Number.isFinite(m.ppl) && m.ppl > 1, m.method);
  }
});

test('bad input: one line, exit code 2, nothing written', async () => {
  const out = path.join(tmp, 'never');
  const base = ['prune', '--model', modelDir, '--out', out, ...CAL_BIN];
  const inf = 'exp(exp(exp(exp(exp(W)))))';
  // Independent runs, spawned together to save wall time.
  const cases: Array<[string[], RegExp]> = [
    [[...base, '--method', 'wanda', '--sparsity', '1.5'], /--sparsity 1\.5: must be a number strictly between 0 and 1/],
    [[...base, '--method', 'wanda', '--sparsity', '0'], /strictly between 0 and 1/],
    [[...base, '--method', 'wanda', '--pattern', '2:4', '--sparsity', '0.6'], /pattern 2:4 prunes exactly 50%/],
    [[...base, '--metric', 'frobnicate(W)'], /--metric frobnicate\(W\): .*frobnicate/],
    [[...base, '--metric', `sub(${inf},${inf})`], /yields NaN for every weight/],
    [[...base, '--method', 'obs'], /--method obs: unknown method/],
    [base, /exactly one of --metric/],
  ];
  const runs = await Promise.all(cases.map(([args]) => symprune(...args)));
  runs.forEach((r, i) => assertBadInput(r, cases[i]![1]));
  assert.ok(!fs.existsSync(out), 'no output folder was created');

  // --out that would overwrite the input model: the folder itself, or the model file's folder
  const before = fs.readFileSync(modelFile);
  const mtime = fs.statSync(modelFile).mtimeMs;
  assertBadInput(await symprune('prune', '--model', modelDir, '--method', 'magnitude', '--out', modelDir), /input model's folder/);
  assertBadInput(await symprune('prune', '--model', modelFile, '--method', 'magnitude', '--out', path.join(modelDir, '.')), /input model's folder/);
  assert.deepEqual(fs.readFileSync(modelFile), before);
  assert.equal(fs.statSync(modelFile).mtimeMs, mtime);
  assert.ok(!fs.existsSync(path.join(modelDir, 'prune.json')));

  // a model with no prunable layers
  const flatDir = path.join(tmp, 'flat');
  fs.mkdirSync(flatDir);
  await saveModel(makeModel({
    name: 'flat',
    node: [node('Gather', ['emb', 'input_ids'], ['h'], 'embed'), node('MatMul', ['h', 'head'], ['logits'], '/lm_head/MatMul')],
    initializer: [floatTensor('emb', [10, 4], new Float32Array(40).fill(0.1)), floatTensor('head', [4, 10], new Float32Array(40).fill(0.2))],
    input: [valueInfo('input_ids', DataType.INT64, ['b', 's'])],
    output: [valueInfo('logits', DataType.FLOAT, ['b', 's', 10])],
  }), path.join(flatDir, 'model.onnx'));
  assertBadInput(await symprune('prune', '--model', flatDir, '--method', 'magnitude', '--out', path.join(tmp, 'flat-out')), /model has no prunable layers/);
  assert.ok(!fs.existsSync(path.join(tmp, 'flat-out')));

  // a stats file that does not match the model
  const m = await loadModel(modelFile);
  const ls = discoverLayers(m).map((l) => ({ name: l.name, out: l.out, in: l.in + 1 }));
  const bad = path.join(tmp, 'bad.safetensors');
  writeStatsFile(bad, ls, (l) => ({ G: new Float32Array(l.out * l.in), X: new Float32Array(l.in) }));
  assertBadInput(await symprune(...base, '--method', 'pruner-zero', '--stats', bad), /bad\.safetensors: model\.layers\.0\.self_attn\.q_proj\.G has shape \[32,33\], the model's layer is \[32, 32\]/);
  assert.ok(!fs.existsSync(out));

  // stats: refuses to write over the model
  assertBadInput(await symprune('stats', '--model', modelDir, '--out', modelFile), /expected a \.safetensors file name/);
});
