/** `--tokenizer` on the commands that read text, for a model folder that has no tokenizer.json. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsReader } from '../src/model/safetensors.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { makeCheckpoint } from './support/hf-checkpoint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOKENIZER = path.join(ROOT, 'models', 'brown-llama', 'tokenizer.json');

test('stats and prune read text through --tokenizer when the model folder has none', async () => {
  const vocabSize = Object.keys((JSON.parse(fs.readFileSync(TOKENIZER, 'utf8')) as { model: { vocab: object } }).model.vocab).length;
  const c: LlamaConfig = { vocabSize, dim: 16, layers: 1, heads: 2, kvHeads: 1, ffn: 24, maxPositions: 32, ropeTheta: 10000, normEps: 1e-5 };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-tok-'));
  const model = path.join(dir, 'model');
  await makeCheckpoint(model, c, { dtype: 'BF16' });
  const text = path.join(dir, 'notes.txt');
  fs.writeFileSync(text, 'The jury said the election was conducted well. '.repeat(40));
  const cli = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'symprune.mjs'), ...args, '--model', model, '--data', text, '--nsamples', '2', '--seqlen', '16', '--threads', '1'], { encoding: 'utf8' });

  const stats = path.join(dir, 's.safetensors');
  const ok = cli('stats', '--tokenizer', TOKENIZER, '--out', stats);
  assert.equal(ok.status, 0, ok.stderr);
  const r = await SafetensorsReader.open(stats);
  assert.deepEqual(r.entry('model.layers.0.mlp.down_proj.G').shape, [16, 24]);
  await r.close();

  const pruned = path.join(dir, 'pruned');
  const p = cli('prune', '--method', 'wanda', '--tokenizer', TOKENIZER, '--out', pruned);
  assert.equal(p.status, 0, p.stderr);
  assert.ok(fs.existsSync(path.join(pruned, 'tokenizer.json')), 'the tokenizer travels with the pruned model');

  const none = cli('stats', '--out', path.join(dir, 'x.safetensors'));
  assert.equal(none.status, 2, none.stderr);
  assert.equal(none.stderr.trim().split('\n').length, 1);
  const missing = cli('prune', '--method', 'wanda', '--tokenizer', path.join(dir, 'nope.json'), '--out', path.join(dir, 'y'));
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^symprune: --tokenizer .*nope\.json: file not found\n$/);
  assert.ok(!fs.existsSync(path.join(dir, 'y')) && !fs.existsSync(path.join(dir, 'x.safetensors')));
});
