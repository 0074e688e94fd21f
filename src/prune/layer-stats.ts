/**
 * Per-layer calibration statistics as the pruning code holds them in memory:
 * X [in] (mean over sequences of the squared input-channel norm) and G [out, in]
 * (scaled gradient norm), both float32 and in the PyTorch convention, keyed by the
 * layer's PyTorch module name.
 */

export interface LayerStats {
  /** [in]: X_j = (1/N) Σ_n Σ_t x[n,t,j]². */
  X: Float32Array | null;
  /** [out, in]: 100 · sqrt(Σ_n g_n²) on the dense model. */
  G: Float32Array | null;
}

export type StatsMap = Map<string, LayerStats>;

/** The shape facts a statistics consumer needs about a layer (a PrunableLayer has them). */
export interface LayerShape {
  name: string;
  out: number;
  in: number;
}

/** Which statistics a metric or method reads. */
export interface StatsNeed {
  X: boolean;
  G: boolean;
}

/** Safetensors tensor names of a layer's statistics. */
export function statName(layer: string, kind: 'X' | 'G'): string {
  return `${layer}.${kind}`;
}

/**
 * Running Σ_t x² per input channel over sequences, kept in float64 so thousands of
 * batches add up without float32 drift; `mean()` divides by the number of sequences.
 */
export class SquareSumAccumulator {
  readonly sums: Float64Array;
  sequences = 0;
  constructor(readonly channels: number) {
    this.sums = new Float64Array(channels);
  }
  add(batchSums: ArrayLike<number>, sequences: number): void {
    if (batchSums.length !== this.channels) throw new Error(`expected ${this.channels} channel sums, got ${batchSums.length}`);
    for (let j = 0; j < this.channels; j++) this.sums[j] += batchSums[j]!;
    this.sequences += sequences;
  }
  mean(): Float32Array {
    const out = new Float32Array(this.channels);
    const n = Math.max(this.sequences, 1);
    for (let j = 0; j < this.channels; j++) out[j] = this.sums[j]! / n;
    return out;
  }
}

