/**
 * The three inputs of a metric for one linear layer, in PyTorch layout: W and G are
 * [rows = out, cols = in] row-major, X is [cols] and broadcasts over rows.
 */
import seedrandom from 'seedrandom';
import { InputError } from '../errors.ts';
import type { AllocationTerminal } from './tree.ts';

export interface TerminalData {
  rows: number;
  cols: number;
  /** |weight|, [rows * cols]. */
  W: Float32Array;
  /** Gradient statistic 100·sqrt(Σ g²), [rows * cols]; null when not collected. */
  G: Float32Array | null;
  /** Mean squared input activation per input channel, [cols]. */
  X: Float32Array;
  /** Per-block statistics of a layer-wise allocation, one value per block (rows 1, cols = blocks). */
  blocks?: Partial<Record<AllocationTerminal, Float32Array>>;
}

/** Throws an InputError naming the mismatch when the arrays do not fit rows x cols. */
export function checkTerminalData(data: TerminalData, needsG: boolean): void {
  const { rows, cols } = data;
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new InputError(`terminal data: rows and cols must be non-negative integers, got ${rows} x ${cols}`);
  }
  const n = rows * cols;
  if (!(data.W instanceof Float32Array) || data.W.length !== n) {
    throw new InputError(`terminal data: W must be a Float32Array of ${rows}x${cols} = ${n} values, got ${data.W?.length}`);
  }
  if (!(data.X instanceof Float32Array) || data.X.length !== cols) {
    throw new InputError(`terminal data: X must be a Float32Array of ${cols} values, got ${data.X?.length}`);
  }
  if (data.G !== null && (!(data.G instanceof Float32Array) || data.G.length !== n)) {
    throw new InputError(`terminal data: G must be a Float32Array of ${n} values, got ${data.G?.length}`);
  }
  if (needsG && data.G === null) {
    throw new InputError('terminal data: the metric uses G but no gradient statistics were given');
  }
}

export interface RandomDataOptions {
  /**
   * 'llm': magnitudes like a real LLaMA layer (|W| ~ |N(0, 0.02)|, G log-normal around 0.05,
   * X log-normal over ~6 decades with a few outlier channels); 'unit': |N(0,1)| for W and G,
   * X log-normal around 1. Both are strictly positive almost surely and tie-free.
   */
  profile?: 'llm' | 'unit';
  withG?: boolean;
}

/** Seeded random terminal data, for probes, tests and benchmarks. */
export function randomTerminalData(seed: string | number, rows: number, cols: number, opts: RandomDataOptions = {}): TerminalData {
  const rng = seedrandom.alea(String(seed)); // alea: fast enough for 4096 x 11008 layers
  const profile = opts.profile ?? 'llm';
  const gauss = () => {
    // Box-Muller; 1 - u keeps the log argument in (0, 1].
    const u = 1 - rng();
    const v = rng();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const n = rows * cols;
  const W = new Float32Array(n);
  const G = opts.withG === false ? null : new Float32Array(n);
  const X = new Float32Array(cols);
  if (profile === 'llm') {
    for (let i = 0; i < n; i++) W[i] = Math.abs(gauss() * 0.02);
    if (G) for (let i = 0; i < n; i++) G[i] = 0.05 * Math.exp(gauss());
    for (let j = 0; j < cols; j++) X[j] = Math.exp(gauss() * 1.5 - 1) * (rng() < 0.01 ? 100 : 1);
  } else {
    for (let i = 0; i < n; i++) W[i] = Math.abs(gauss());
    if (G) for (let i = 0; i < n; i++) G[i] = Math.abs(gauss());
    for (let j = 0; j < cols; j++) X[j] = Math.exp(gauss() * 0.5);
  }
  return { rows, cols, W, G, X };
}
