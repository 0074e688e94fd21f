/**
 * A plain TypeScript forward pass of LlamaForCausalLM (eager attention), in float64,
 * written from the transformers modelling code and independent of the ONNX builder:
 * it is the yardstick the built graphs are checked against.
 */
import type { LlamaConfig } from '../../src/onnx/llama-config.ts';

type Weights = Map<string, Float32Array>;

const FINFO_MIN = -3.4028234663852886e38;

function get(w: Weights, name: string): Float32Array {
  const t = w.get(name);
  if (!t) throw new Error(`reference: missing weight ${name}`);
  return t;
}

/** y = W x (+ b) with W in PyTorch layout [out, in]. */
function linear(W: Float32Array, x: Float64Array, out: number, b?: Float32Array): Float64Array {
  const inp = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    const base = o * inp;
    for (let i = 0; i < inp; i++) s += W[base + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  ms /= x.length;
  const inv = 1 / Math.sqrt(ms + eps);
  return x.map((v, i) => v * inv * w[i]!);
}

/**
 * The rotary frequency of pair i, in float64, written from transformers'
 * _compute_default/linear/llama3_rope_parameters.
 */
function frequency(c: LlamaConfig, i: number, d: number): number {
  const base = 1 / c.ropeTheta ** ((2 * i) / d);
  const rs = c.ropeScaling;
  if (!rs) return base;
  if (rs.type === 'linear') return base / rs.factor;
  const wavelen = (2 * Math.PI) / base;
  if (wavelen < rs.originalMaxPositions / rs.highFreqFactor) return base; // high frequency: kept
  if (wavelen > rs.originalMaxPositions / rs.lowFreqFactor) return base / rs.factor; // low frequency: scaled
  const t = (rs.originalMaxPositions / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
  return (1 - t) * (base / rs.factor) + t * base;
}

/** q * cos + rotate_half(q) * sin for one head vector at position p. */
function rope(x: Float64Array, p: number, cfg: LlamaConfig): Float64Array {
  const d = x.length;
  const half = d / 2;
  const out = new Float64Array(d);
  for (let i = 0; i < half; i++) {
    const angle = p * frequency(cfg, i, d);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    out[i] = x[i]! * c - x[i + half]! * s;
    out[i + half] = x[i + half]! * c + x[i]! * s;
  }
  return out;
}

/**
 * Logits [batch * seq * vocab] for token ids [batch][seq]. attentionMask defaults to
 * all ones and positionIds to 0..seq-1 per row, as transformers does without them.
 */
export function llamaReferenceForward(c: LlamaConfig, w: Weights, inputIds: number[][], attentionMask?: number[][], positionIds?: number[][]): Float64Array {
  const B = inputIds.length;
  const S = inputIds[0]!.length;
  const hd = c.headDim ?? c.dim / c.heads;
  const bias = (name: string): Float32Array | undefined => w.get(name);
  const head = c.tieWordEmbeddings ? get(w, 'model.embed_tokens.weight') : get(w, 'lm_head.weight');
  const nRep = c.heads / c.kvHeads;
  const V = c.vocabSize;
  const logits = new Float64Array(B * S * V);
  const emb = get(w, 'model.embed_tokens.weight');
  for (let b = 0; b < B; b++) {
    const am = attentionMask?.[b] ?? new Array(S).fill(1);
    const pos = positionIds?.[b] ?? Array.from({ length: S }, (_, i) => i);
    // hidden[t] for each position
    let hidden: Float64Array[] = inputIds[b]!.map((id) => Float64Array.from(emb.subarray(id * c.dim, (id + 1) * c.dim)));
    for (let l = 0; l < c.layers; l++) {
      const p = `model.layers.${l}`;
      const xn = hidden.map((x) => rmsNorm(x, get(w, `${p}.input_layernorm.weight`), c.normEps));
      const q = xn.map((x) => linear(get(w, `${p}.self_attn.q_proj.weight`), x, c.heads * hd, bias(`${p}.self_attn.q_proj.bias`)));
      const k = xn.map((x) => linear(get(w, `${p}.self_attn.k_proj.weight`), x, c.kvHeads * hd, bias(`${p}.self_attn.k_proj.bias`)));
      const v = xn.map((x) => linear(get(w, `${p}.self_attn.v_proj.weight`), x, c.kvHeads * hd, bias(`${p}.self_attn.v_proj.bias`)));
      const qh = q.map((row, t) => Array.from({ length: c.heads }, (_, h) => rope(row.subarray(h * hd, (h + 1) * hd), pos[t]!, c)));
      const kh = k.map((row, t) => Array.from({ length: c.kvHeads }, (_, h) => rope(row.subarray(h * hd, (h + 1) * hd), pos[t]!, c)));
      const ctx = Array.from({ length: S }, () => new Float64Array(c.heads * hd));
      for (let h = 0; h < c.heads; h++) {
        const kv = Math.floor(h / nRep);
        for (let i = 0; i < S; i++) {
          const scores = new Float64Array(S);
          for (let j = 0; j < S; j++) {
            let s = 0;
            for (let d = 0; d < hd; d++) s += qh[i]![h]![d]! * kh[j]![kv]![d]!;
            s /= Math.sqrt(hd);
            const masked = j > i || am[j] === 0;
            scores[j] = s + (masked ? FINFO_MIN : 0);
          }
          const mx = Math.max(...scores);
          let z = 0;
          for (let j = 0; j < S; j++) z += (scores[j] = Math.exp(scores[j]! - mx));
          for (let j = 0; j < S; j++) {
            const pj = scores[j]! / z;
            for (let d = 0; d < hd; d++) ctx[i]![h * hd + d]! += pj * v[j]![kv * hd + d]!;
          }
        }
      }
      hidden = hidden.map((x, t) => {
        const o = linear(get(w, `${p}.self_attn.o_proj.weight`), ctx[t]!, c.dim, bias(`${p}.self_attn.o_proj.bias`));
        return x.map((val, i) => val + o[i]!);
      });
      hidden = hidden.map((x) => {
        const xn2 = rmsNorm(x, get(w, `${p}.post_attention_layernorm.weight`), c.normEps);
        const gate = linear(get(w, `${p}.mlp.gate_proj.weight`), xn2, c.ffn);
        const up = linear(get(w, `${p}.mlp.up_proj.weight`), xn2, c.ffn);
        const act = gate.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]!);
        const down = linear(get(w, `${p}.mlp.down_proj.weight`), act, c.dim);
        return x.map((val, i) => val + down[i]!);
      });
    }
    for (let t = 0; t < S; t++) {
      const hn = rmsNorm(hidden[t]!, get(w, 'model.norm.weight'), c.normEps);
      logits.set(linear(head, hn, V), (b * S + t) * V);
    }
  }
  return logits;
}
