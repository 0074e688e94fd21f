/**
 * A TinyLlama-1.1B-shaped checkpoint with seeded random weights, as a bfloat16 Hugging
 * Face folder (config.json + model.safetensors, 2.2 GB at 22 blocks): 32000 vocabulary,
 * hidden 2048, 32 heads, 4 KV heads, intermediate 5632. Weights are normal(0, 0.02) as
 * LlamaForCausalLM initialises them (norms one), drawn tensor by tensor so memory stays
 * at one tensor; the bundled tokenizer is copied beside it (its ids are < 32000).
 *
 *   node --import tsx scripts/make-scale-model.ts --out DIR [--layers 22] [--seed 1]
 *
 * `depthView(dir, n, out)` makes a folder that reads as the first n blocks of it
 * (config.json with num_hidden_layers = n, the weight file linked, not copied).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hfConfigFromLlama } from '../src/model/hf-config.ts';
import { writeHfCheckpoint } from '../src/model/hf-write.ts';
import { llamaWeightSpecs } from '../src/onnx/llama-weights.ts';
import type { LlamaConfig } from '../src/onnx/llama-config.ts';
import { BUNDLED_MODEL_DIR } from '../src/model/load.ts';

export function tinyLlamaConfig(layers = 22): LlamaConfig {
  return { vocabSize: 32000, dim: 2048, layers, heads: 32, kvHeads: 4, ffn: 5632, maxPositions: 2048, ropeTheta: 10000, normEps: 1e-5 };
}

/** Seeded normal(0, std) values from a 32-bit xorshift generator and Box-Muller (fast: 1.1e9 draws). */
function normals(n: number, seed: number, std: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 0x9e3779b9;
  const next = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  for (let i = 0; i < n; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(next()));
    const a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

function hashName(name: string, seed: number): number {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Write the checkpoint into `dir`; returns its weight file size in bytes. */
export async function makeScaleModel(dir: string, layers = 22, seed = 1): Promise<number> {
  const c = tinyLlamaConfig(layers);
  const specs = llamaWeightSpecs(c);
  const kinds = new Map(specs.map((s) => [s.name, s]));
  await writeHfCheckpoint(
    dir,
    hfConfigFromLlama(c, 'llama', 'bfloat16'),
    specs.map((s) => ({ name: s.name, shape: [...s.shape] })),
    (name) => {
      const s = kinds.get(name)!;
      const n = s.shape.reduce((a, b) => a * b, 1);
      return s.kind === 'norm' ? new Float32Array(n).fill(1) : normals(n, hashName(name, seed), 0.02);
    },
    { dtype: 'BF16', maxShardBytes: 1e12 },
  );
  fs.copyFileSync(path.join(BUNDLED_MODEL_DIR, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return fs.statSync(path.join(dir, 'model.safetensors')).size;
}

/** A folder that reads as the first `n` blocks of the checkpoint in `dir`. */
export function depthView(dir: string, n: number, out: string): void {
  fs.mkdirSync(out, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: n }, null, 2));
  for (const f of ['model.safetensors', 'tokenizer.json']) {
    const link = path.join(out, f);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.resolve(dir, f), link);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (k: string, d?: string): string | undefined => {
    const i = process.argv.indexOf(`--${k}`);
    return i >= 0 ? process.argv[i + 1] : d;
  };
  const out = arg('out');
  if (!out) {
    console.error('usage: make-scale-model.ts --out DIR [--layers 22] [--seed 1]');
    process.exit(2);
  }
  const t0 = performance.now();
  const bytes = await makeScaleModel(out, Number(arg('layers', '22')), Number(arg('seed', '1')));
  console.log(`wrote ${out}: ${(bytes / 1e9).toFixed(2)} GB of bfloat16 weights in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
