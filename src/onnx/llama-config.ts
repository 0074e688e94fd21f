/**
 * The hyper-parameters of a LLaMA-family decoder (the fields of Hugging Face's
 * LlamaConfig that shape the graph), with validation so a bad training config fails
 * with one clear line instead of a broken graph.
 */
import { InputError } from '../errors.ts';

export interface LlamaConfig {
  vocabSize: number;
  /** hidden_size */
  dim: number;
  /** num_hidden_layers */
  layers: number;
  /** num_attention_heads */
  heads: number;
  /** num_key_value_heads (grouped-query attention when < heads) */
  kvHeads: number;
  /** intermediate_size */
  ffn: number;
  /** max_position_embeddings: size of the rotary tables */
  maxPositions: number;
  /** rope_theta */
  ropeTheta: number;
  /** rms_norm_eps */
  normEps: number;
}

const INT_FIELDS = ['vocabSize', 'dim', 'layers', 'heads', 'kvHeads', 'ffn', 'maxPositions'] as const;

/** Check a config (from a file or code) and return it typed; throws InputError naming the field. */
export function validateLlamaConfig(c: unknown, source = 'model config'): LlamaConfig {
  if (typeof c !== 'object' || c === null) throw new InputError(`${source}: expected an object`);
  const o = c as Record<string, unknown>;
  for (const k of INT_FIELDS) {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new InputError(`${source}: ${k} must be a positive integer (got ${JSON.stringify(v)})`);
  }
  for (const k of ['ropeTheta', 'normEps'] as const) {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InputError(`${source}: ${k} must be a positive number (got ${JSON.stringify(v)})`);
  }
  const cfg = o as unknown as LlamaConfig;
  if (cfg.dim % cfg.heads !== 0) throw new InputError(`${source}: dim ${cfg.dim} is not divisible by heads ${cfg.heads}`);
  if (cfg.heads % cfg.kvHeads !== 0) throw new InputError(`${source}: heads ${cfg.heads} is not divisible by kvHeads ${cfg.kvHeads}`);
  if ((cfg.dim / cfg.heads) % 2 !== 0) throw new InputError(`${source}: head dimension ${cfg.dim / cfg.heads} must be even for rotary embeddings`);
  return {
    vocabSize: cfg.vocabSize,
    dim: cfg.dim,
    layers: cfg.layers,
    heads: cfg.heads,
    kvHeads: cfg.kvHeads,
    ffn: cfg.ffn,
    maxPositions: cfg.maxPositions,
    ropeTheta: cfg.ropeTheta,
    normEps: cfg.normEps,
  };
}

export function headDim(c: LlamaConfig): number {
  return c.dim / c.heads;
}

/** Number of weights (embedding, blocks, final norm, lm_head). */
export function llamaParamCount(c: LlamaConfig): number {
  const hd = headDim(c);
  const attn = c.dim * c.dim * 2 + 2 * c.dim * c.kvHeads * hd;
  const mlp = 3 * c.dim * c.ffn;
  return 2 * c.vocabSize * c.dim + c.layers * (attn + mlp + 2 * c.dim) + c.dim;
}
