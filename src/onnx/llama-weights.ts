/**
 * LLaMA weights as users of Hugging Face know them: a Map from the state_dict names
 * (`model.layers.0.self_attn.q_proj.weight`) to row-major Float32Arrays in PyTorch
 * layout ([out, in] for linear layers), plus a seeded initialisation.
 */
import seedrandom from 'seedrandom';
import { InputError } from '../errors.ts';
import { headDim, type LlamaConfig } from './llama-config.ts';

export type LlamaWeights = Map<string, Float32Array>;

export const LINEAR_PROJ = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
export const MLP_PROJ = ['gate_proj', 'up_proj', 'down_proj'] as const;

export interface WeightSpec {
  /** state_dict name */
  name: string;
  /** PyTorch shape */
  shape: [number, number] | [number];
  kind: 'embedding' | 'linear' | 'norm' | 'bias';
}

/**
 * Every weight of the model, in state_dict order, with its PyTorch shape. With tied
 * embeddings there is no lm_head.weight: the head multiplies by the embedding matrix.
 */
export function llamaWeightSpecs(c: LlamaConfig): WeightSpec[] {
  const hd = headDim(c);
  const specs: WeightSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, c.dim], kind: 'embedding' }];
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}`;
    const bias = (proj: string, n: number): WeightSpec[] =>
      c.attentionBias && (proj !== 'o_proj' || c.attentionBias === 'qkvo') ? [{ name: `${p}.self_attn.${proj}.bias`, shape: [n], kind: 'bias' }] : [];
    specs.push(
      { name: `${p}.self_attn.q_proj.weight`, shape: [c.heads * hd, c.dim], kind: 'linear' },
      ...bias('q_proj', c.heads * hd),
      { name: `${p}.self_attn.k_proj.weight`, shape: [c.kvHeads * hd, c.dim], kind: 'linear' },
      ...bias('k_proj', c.kvHeads * hd),
      { name: `${p}.self_attn.v_proj.weight`, shape: [c.kvHeads * hd, c.dim], kind: 'linear' },
      ...bias('v_proj', c.kvHeads * hd),
      { name: `${p}.self_attn.o_proj.weight`, shape: [c.dim, c.heads * hd], kind: 'linear' },
      ...bias('o_proj', c.dim),
      { name: `${p}.mlp.gate_proj.weight`, shape: [c.ffn, c.dim], kind: 'linear' },
      { name: `${p}.mlp.up_proj.weight`, shape: [c.ffn, c.dim], kind: 'linear' },
      { name: `${p}.mlp.down_proj.weight`, shape: [c.dim, c.ffn], kind: 'linear' },
      { name: `${p}.input_layernorm.weight`, shape: [c.dim], kind: 'norm' },
      { name: `${p}.post_attention_layernorm.weight`, shape: [c.dim], kind: 'norm' },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [c.dim], kind: 'norm' });
  if (!c.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, c.dim], kind: 'linear' });
  return specs;
}

/**
 * Seeded initial weights as LlamaForCausalLM._init_weights does: normal(0, std) for
 * embeddings and linear layers (initializer_range 0.02), ones for RMSNorm weights.
 */
export function initLlamaWeights(c: LlamaConfig, seed: number | string, std = 0.02): LlamaWeights {
  const rng = seedrandom(String(seed));
  let spare: number | null = null;
  const normal = (): number => {
    if (spare !== null) {
      const v = spare;
      spare = null;
      return v;
    }
    // Box-Muller; 1 - rng() avoids log(0).
    const u = 1 - rng();
    const v = rng();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
  const w: LlamaWeights = new Map();
  for (const s of llamaWeightSpecs(c)) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    // Biases start at zero, as _init_weights sets them.
    if (s.kind === 'norm') data.fill(1);
    else if (s.kind !== 'bias') for (let i = 0; i < n; i++) data[i] = std * normal();
    w.set(s.name, data);
  }
  return w;
}

/** Throw unless `w` holds exactly the weights of config `c` with the right sizes. */
export function checkLlamaWeights(c: LlamaConfig, w: LlamaWeights): void {
  for (const s of llamaWeightSpecs(c)) {
    const data = w.get(s.name);
    if (!data) throw new InputError(`weights: missing ${s.name}`);
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new InputError(`weights: ${s.name} has ${data.length} values, expected [${s.shape.join(', ')}] = ${n}`);
  }
}
