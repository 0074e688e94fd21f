import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JobSpecError, loadJob } from '../src/eval/job.ts';
import { hfConfigFromLlama } from '../src/model/hf-config.ts';
import { modelSha256, resolveModel } from '../src/model/load.ts';
import { encodeHeader } from '../src/model/safetensors.ts';
import { llamaWeightSpecs } from '../src/onnx/llama-weights.ts';
import { tinyLlamaConfig } from '../scripts/make-scale-model.ts';

/**
 * A TinyLlama-shaped bf16 Hugging Face folder whose weight file is sparse: the real
 * header, then 2.2 GB of zeros that take no disk. Its float32 weights (4.4 GB) are over
 * the 4 GiB one buffer holds, so a queue worker must refuse it from the header alone.
 */
function sparseCheckpoint(dir: string): void {
  const c = tinyLlamaConfig(22);
  const specs = llamaWeightSpecs(c).map((s) => ({ name: s.name, shape: [...s.shape], dtype: 'BF16' as const }));
  const header = encodeHeader(specs);
  const bytes = specs.reduce((a, s) => a + 2 * s.shape.reduce((p, x) => p * x, 1), 0);
  const file = path.join(dir, 'model.safetensors');
  fs.writeFileSync(file, header);
  fs.truncateSync(file, header.length + bytes);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfigFromLlama(c, 'llama', 'bfloat16')));
}

test('a queue worker refuses a job whose model has over 4 GiB of float32 weights with a one-line JobSpecError (what it sends back to the search), from the weight file header', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-large-'));
  try {
    sparseCheckpoint(dir);
    const sha256 = await modelSha256(resolveModel(dir));
    const spec = {
      model: { sha256, path: dir },
      statistics: { sha256: '0'.repeat(64), path: path.join(dir, 'stats.safetensors') },
      fitness: { data: 'brown:test', tokensSha256: '0'.repeat(64) },
      seqlen: 128,
      sparsity: 0.5,
      pattern: 'unstructured',
    };
    await assert.rejects(loadJob(spec, []), (e: Error) => {
      assert.ok(e instanceof JobSpecError, `${e.name}: ${e.message}`);
      assert.match(e.message, /^model .* has 4\.1 GiB of float32 weights, over the 4 GiB a worker thread is handed in one buffer; search it without --queue \(block by block\)$/);
      return true;
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
