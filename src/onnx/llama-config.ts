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
  /** head_dim when given explicitly (default dim / heads) */
  headDim?: number;
  /** Projections with a bias: Qwen2 has q/k/v biases, LLaMA's attention_bias adds o too. */
  attentionBias?: 'qkv' | 'qkvo';
  /** rope_scaling: how the rotary frequencies are rescaled for longer contexts */
  ropeScaling?: RopeScaling;
  /** tie_word_embeddings: lm_head shares the embedding matrix (no lm_head.weight in the files) */
  tieWordEmbeddings?: boolean;
}

/** The rope_scaling types transformers defines that symprune computes. */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

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
  if (cfg.headDim !== undefined && !(Number.isInteger(cfg.headDim) && cfg.headDim > 0)) throw new InputError(`${source}: headDim must be a positive integer (got ${JSON.stringify(cfg.headDim)})`);
  if (cfg.headDim === undefined && cfg.dim % cfg.heads !== 0) throw new InputError(`${source}: dim ${cfg.dim} is not divisible by heads ${cfg.heads}`);
  if (cfg.heads % cfg.kvHeads !== 0) throw new InputError(`${source}: heads ${cfg.heads} is not divisible by kvHeads ${cfg.kvHeads}`);
  if (headDim(cfg) % 2 !== 0) throw new InputError(`${source}: head dimension ${headDim(cfg)} must be even for rotary embeddings`);
  if (cfg.attentionBias !== undefined && cfg.attentionBias !== 'qkv' && cfg.attentionBias !== 'qkvo') throw new InputError(`${source}: attentionBias must be qkv or qkvo`);
  const rs = cfg.ropeScaling;
  if (rs !== undefined) {
    const pos = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v > 0;
    const ok = rs.type === 'linear' ? pos(rs.factor) : rs.type === 'llama3' ? pos(rs.factor) && pos(rs.lowFreqFactor) && pos(rs.highFreqFactor) && rs.highFreqFactor > rs.lowFreqFactor && pos(rs.originalMaxPositions) : false;
    if (!ok) throw new InputError(`${source}: bad ropeScaling ${JSON.stringify(rs)}`);
  }
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
    ...(cfg.headDim !== undefined && { headDim: cfg.headDim }),
    ...(cfg.attentionBias !== undefined && { attentionBias: cfg.attentionBias }),
    ...(cfg.ropeScaling !== undefined && { ropeScaling: cfg.ropeScaling }),
    ...(cfg.tieWordEmbeddings !== undefined && { tieWordEmbeddings: cfg.tieWordEmbeddings }),
  };
}

export function headDim(c: LlamaConfig): number {
  return c.headDim ?? c.dim / c.heads;
}

/** Number of weights (embedding, blocks, final norm, lm_head). */
export function llamaParamCount(c: LlamaConfig): number {
  const hd = headDim(c);
  const attn = 2 * c.dim * c.heads * hd + 2 * c.dim * c.kvHeads * hd;
  const bias = c.attentionBias ? (c.heads + 2 * c.kvHeads) * hd + (c.attentionBias === 'qkvo' ? c.dim : 0) : 0;
  const mlp = 3 * c.dim * c.ffn;
  return (c.tieWordEmbeddings ? 1 : 2) * c.vocabSize * c.dim + c.layers * (attn + bias + mlp + 2 * c.dim) + c.dim;
}
