/**
 * Small Hugging Face checkpoints made on the spot (config.json + safetensors), and a
 * reference perplexity from the plain TypeScript forward pass.
 */
import { initLlamaWeights, llamaWeightSpecs } from '../../src/onnx/llama-weights.ts';
import type { LlamaConfig } from '../../src/onnx/llama-config.ts';
import { hfConfigFromLlama, type HfModelType } from '../../src/model/hf-config.ts';
import { writeHfCheckpoint } from '../../src/model/hf-write.ts';
import { openHfWeights } from '../../src/model/hf-weights.ts';
import type { FloatDtype } from '../../src/model/safetensors.ts';
import { llamaReferenceForward } from './llama-reference.ts';

/** Weights with a large spread (attention far from uniform), non-trivial norms and biases. */
export function livelyWeights(c: LlamaConfig, seed: number): Map<string, Float32Array> {
  const w = initLlamaWeights(c, seed, 0.3);
  let k = 0;
  for (const [name, data] of w) {
    if (name.endsWith('norm.weight')) for (let i = 0; i < data.length; i++) data[i] = 0.5 + ((k++ * 7919) % 101) / 100;
    if (name.endsWith('.bias')) for (let i = 0; i < data.length; i++) data[i] = (((k++ * 104729) % 201) - 100) / 100;
  }
  return w;
}

/** Write a checkpoint of config `c`; returns the weights as stored (rounded to `dtype`), read back. */
export async function makeCheckpoint(
  dir: string,
  c: LlamaConfig,
  opts: { modelType?: HfModelType; dtype?: FloatDtype; maxShardBytes?: number; seed?: number; extra?: Record<string, unknown> } = {},
): Promise<Map<string, Float32Array>> {
  const w = livelyWeights(c, opts.seed ?? 1);
  const dtype = opts.dtype ?? 'F32';
  const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype];
  const specs = llamaWeightSpecs(c).map((s) => ({ name: s.name, shape: [...s.shape] }));
  await writeHfCheckpoint(dir, { ...hfConfigFromLlama(c, opts.modelType ?? 'llama', torchDtype), ...opts.extra }, specs, (n) => w.get(n)!, { dtype, maxShardBytes: opts.maxShardBytes });
  const back = await openHfWeights(dir);
  const stored = new Map<string, Float32Array>();
  for (const s of specs) stored.set(s.name, await back.readFloat32(s.name));
  await back.close();
  return stored;
}

/** Perplexity over non-overlapping windows of `seqlen`, in float64 from the reference forward. */
export function referencePerplexity(c: LlamaConfig, w: Map<string, Float32Array>, tokens: Int32Array, seqlen: number): number {
  const windows = Math.floor(tokens.length / seqlen);
  let sum = 0;
  for (let k = 0; k < windows; k++) {
    const ids = Array.from(tokens.subarray(k * seqlen, (k + 1) * seqlen));
    const logits = llamaReferenceForward(c, w, [ids]);
    const V = c.vocabSize;
    for (let t = 0; t < seqlen - 1; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      const mx = Math.max(...row);
      let z = 0;
      for (const v of row) z += Math.exp(v - mx);
      sum += Math.log(z) + mx - row[ids[t + 1]!]!;
    }
  }
  return Math.exp(sum / (windows * (seqlen - 1)));
}
