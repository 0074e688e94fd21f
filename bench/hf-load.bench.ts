/**
 * Loading a Hugging Face checkpoint (bf16 safetensors in shards, widened to float32
 * while reading, built into the ONNX graph) beside loading the same model saved as an
 * ONNX file with float32 external data (symprune's own form), same run, and the
 * process's peak resident memory beside the model's float32 size.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModelGraph, resolveModel } from '../src/model/load.ts';
import { hfConfigFromLlama } from '../src/model/hf-config.ts';
import { writeHfCheckpoint } from '../src/model/hf-write.ts';
import { loadModel, saveModel } from '../src/onnx/model-io.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights, llamaWeightSpecs } from '../src/onnx/llama-weights.ts';
import { llamaParamCount, type LlamaConfig } from '../src/onnx/llama-config.ts';

/** TinyLlama's vocabulary and head layout at a quarter of its width and a third of its depth. */
const CFG: LlamaConfig = { vocabSize: 32000, dim: 512, layers: 8, heads: 8, kvHeads: 2, ffn: 1408, maxPositions: 2048, ropeTheta: 10000, normEps: 1e-5 };
const REPS = 3;

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return (performance.now() - t0) / 1000;
}

export async function run(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-hfload-'));
  try {
    const w = initLlamaWeights(CFG, 1);
    const specs = llamaWeightSpecs(CFG).map((s) => ({ name: s.name, shape: [...s.shape] }));
    const hfDir = path.join(dir, 'hf');
    await writeHfCheckpoint(hfDir, hfConfigFromLlama(CFG), specs, (n) => w.get(n)!, { dtype: 'BF16', maxShardBytes: 50e6 });
    const onnxFile = path.join(dir, 'onnx', 'model.onnx');
    await saveModel(buildLlama(CFG, w), onnxFile, { externalData: 'always' });
    w.clear();
    const params = llamaParamCount(CFG);
    const shards = fs.readdirSync(hfDir).filter((f) => f.endsWith('.safetensors')).length;
    console.log(`model: ${(params / 1e6).toFixed(1)}M params (${((params * 4) / 2 ** 20).toFixed(0)} MiB in float32); HF: ${shards} bf16 shards; ONNX: float32 external data`);
    const hf: number[] = [];
    const onnx: number[] = [];
    for (let r = 0; r < REPS; r++) {
      hf.push(await timed(() => loadModelGraph(resolveModel(hfDir))));
      onnx.push(await timed(() => loadModel(onnxFile)));
    }
    const best = (xs: number[]): number => Math.min(...xs);
    console.log(`load HF folder (read, widen, build graph): best of ${REPS} ${best(hf).toFixed(2)} s`);
    console.log(`load ONNX file (baseline):               best of ${REPS} ${best(onnx).toFixed(2)} s`);
    console.log(`ratio HF / ONNX: ${(best(hf) / best(onnx)).toFixed(2)}`);
    console.log(`peak RSS of the process: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
