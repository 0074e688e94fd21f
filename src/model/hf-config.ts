/**
 * Hugging Face config.json <-> LlamaConfig. Only fields that change the math are read,
 * and every such field is honoured or refused: a config symprune would compute
 * differently from transformers fails with one line instead of giving quietly wrong
 * perplexities.
 */
import { InputError } from '../errors.ts';
import { validateLlamaConfig, type LlamaConfig, type RopeScaling } from '../onnx/llama-config.ts';

export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2'] as const;
export type HfModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

/** Defaults of the transformers config classes, where they differ from LLaMA's. */
const DEFAULT_MAX_POSITIONS: Record<HfModelType, number> = { llama: 2048, mistral: 4096 * 32, qwen2: 32768 };

type Json = Record<string, unknown>;

function num(o: Json, key: string, source: string, fallback?: number): number {
  const v = o[key];
  if (v === undefined || v === null) {
    if (fallback === undefined) throw new InputError(`${source}: missing required field ${key}`);
    return fallback;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(`${source}: ${key} must be a number (got ${JSON.stringify(v)})`);
  return v;
}

function ropeScalingFrom(raw: unknown, source: string): RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object') throw new InputError(`${source}: rope_scaling must be an object`);
  const r = raw as Json;
  const type = r.rope_type ?? r.type;
  if (type === 'default' || type === undefined) return undefined;
  if (type === 'linear') return { type, factor: num(r, 'factor', `${source}: rope_scaling`) };
  if (type === 'llama3') {
    return {
      type,
      factor: num(r, 'factor', `${source}: rope_scaling`),
      lowFreqFactor: num(r, 'low_freq_factor', `${source}: rope_scaling`),
      highFreqFactor: num(r, 'high_freq_factor', `${source}: rope_scaling`),
      originalMaxPositions: num(r, 'original_max_position_embeddings', `${source}: rope_scaling`),
    };
  }
  throw new InputError(`${source}: rope_scaling type ${JSON.stringify(type)} is not supported (supported: default, linear, llama3)`);
}

/** The model config of a Hugging Face config.json (already parsed); `source` names it in errors. */
export function llamaConfigFromHf(json: unknown, source = 'config.json'): LlamaConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InputError(`${source}: expected a JSON object`);
  const o = json as Json;
  const type = o.model_type;
  if (!SUPPORTED_MODEL_TYPES.includes(type as HfModelType)) {
    throw new InputError(`${source}: model_type ${JSON.stringify(type)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const mt = type as HfModelType;
  const act = o.hidden_act ?? 'silu';
  if (act !== 'silu') throw new InputError(`${source}: hidden_act ${JSON.stringify(act)} is not supported (only silu)`);
  if (o.mlp_bias === true) throw new InputError(`${source}: mlp_bias is not supported`);
  if (mt === 'qwen2' && o.use_sliding_window === true) throw new InputError(`${source}: use_sliding_window is not supported`);
  const heads = num(o, 'num_attention_heads', source);
  // transformers >= 5 keeps rope_theta and rope_scaling together in rope_parameters.
  const rp = (o.rope_parameters ?? null) as Json | null;
  const ropeTheta = rp && rp.rope_theta !== undefined ? num(rp, 'rope_theta', `${source}: rope_parameters`) : num(o, 'rope_theta', source, 10000);
  const attentionBias = mt === 'qwen2' ? 'qkv' : o.attention_bias === true ? 'qkvo' : undefined;
  return validateLlamaConfig(
    {
      vocabSize: num(o, 'vocab_size', source),
      dim: num(o, 'hidden_size', source),
      layers: num(o, 'num_hidden_layers', source),
      heads,
      kvHeads: num(o, 'num_key_value_heads', source, heads),
      ffn: num(o, 'intermediate_size', source),
      maxPositions: num(o, 'max_position_embeddings', source, DEFAULT_MAX_POSITIONS[mt]),
      ropeTheta,
      normEps: num(o, 'rms_norm_eps', source, 1e-6),
      ...(o.head_dim !== undefined && o.head_dim !== null && { headDim: num(o, 'head_dim', source) }),
      ...(attentionBias && { attentionBias }),
      ...(ropeScalingFrom(rp ?? o.rope_scaling, source) && { ropeScaling: ropeScalingFrom(rp ?? o.rope_scaling, source) }),
      ...(o.tie_word_embeddings === true && { tieWordEmbeddings: true }),
    },
    source,
  );
}

/** A config.json for a LlamaConfig, as transformers would write it (for new checkpoints). */
export function hfConfigFromLlama(c: LlamaConfig, modelType: HfModelType = 'llama', torchDtype = 'bfloat16'): Json {
  const rs = c.ropeScaling;
  const architecture = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[modelType];
  return {
    architectures: [architecture],
    model_type: modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.dim,
    intermediate_size: c.ffn,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    ...(c.headDim !== undefined && { head_dim: c.headDim }),
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_scaling: !rs
      ? null
      : rs.type === 'linear'
        ? { rope_type: 'linear', factor: rs.factor }
        : { rope_type: 'llama3', factor: rs.factor, low_freq_factor: rs.lowFreqFactor, high_freq_factor: rs.highFreqFactor, original_max_position_embeddings: rs.originalMaxPositions },
    ...(modelType === 'llama' && { attention_bias: c.attentionBias === 'qkvo' }),
    tie_word_embeddings: c.tieWordEmbeddings === true,
    torch_dtype: torchDtype,
  };
}
