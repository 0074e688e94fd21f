/**
 * Prune one linear layer given its statistics: a metric's scores masked per group,
 * or SparseGPT's reconstruction. Knows nothing of blocks or sessions; the caller
 * reads the weight and writes it back.
 */
import { InputError } from '../errors.ts';
import type { PruneMethod } from './baselines.ts';
import type { PrunableLayer } from './discover.ts';
import { lazyUpdateJs, sparseGptPrepared } from './sparsegpt.ts';
import { lazyUpdateOrt, ORT_LAZY_MIN_COLS } from './sparsegpt-ort.ts';
import { preparedBlocked } from './dense-linalg-ort.ts';
import { sparseGptThreaded, threadsForLayer } from './sparsegpt-threads.ts';
import { sessionDefaults } from '../onnx/session.ts';
import type { HessianAccumulator } from './sparsegpt.ts';
import { scoresProblem, type ScoresProblem } from '../search-space/probe.ts';
import { applyMask, maskScores, maskSparsity, type MaskSpec, type ScoreScratch } from './score.ts';

export interface LayerReport {
  name: string;
  block: number;
  out: number;
  in: number;
  pruned: number;
  sparsity: number;
  /** Least and most pruned fraction over the layer's output rows. */
  rowMin: number;
  rowMax: number;
  /** Weights whose score was NaN (0 for SparseGPT). */
  nanCount: number;
  /** The scores could not rank this layer's weights (NaN/inf, or constant within every row), as the search judges a metric. */
  problem?: ScoresProblem | null;
}

export interface LayerInputs {
  X: Float32Array | null;
  G: Float32Array | null;
  gram: HessianAccumulator | null;
}

/** Prune `w` ([out, in], updated in place) with `method`; returns the layer's report. */
export async function pruneLayerWeight(method: PruneMethod, spec: MaskSpec, layer: PrunableLayer, w: Float32Array, st: LayerInputs, scratch: ScoreScratch): Promise<LayerReport> {
  let mask: Uint8Array;
  let nanCount = 0;
  let problem: ScoresProblem | null = null;
  if (method.kind === 'sparsegpt') {
    if (!st.gram) throw new Error(`no Hessian collected for ${layer.name}`);
    const p = spec.pattern;
    const opts = { sparsity: spec.sparsity, n: p.kind === 'nm' ? p.n : 0, m: p.kind === 'nm' ? p.m : 0 };
    // Wide layers: onnxruntime does the O(n³) and rows x cols² parts (float64 factor, float32 updates).
    const wide = layer.in >= ORT_LAZY_MIN_COLS;
    const prep = wide ? await preparedBlocked(st.gram) : st.gram.prepared();
    // Large layers: the per-row OBS loop on worker threads (--threads), the same result bit for bit.
    const threads = sessionDefaults().threads;
    mask =
      threadsForLayer(layer.out, layer.in, threads) > 1
        ? (await sparseGptThreaded(w, layer.out, prep, opts, { threads, lazy: wide ? 'ort' : 'js' })).mask
        : (await sparseGptPrepared(w, layer.out, prep, opts, wide ? lazyUpdateOrt : lazyUpdateJs)).mask;
  } else {
    if (method.needs.X && !st.X) throw new Error(`no X for ${layer.name}`);
    if (method.needs.G && !st.G) throw new InputError(`no G for layer ${layer.name}`);
    const scores = method.score!({ rows: layer.out, cols: layer.in, weight: w, X: st.X, G: st.G }, { name: layer.name, scratch });
    const res = maskScores(scores, layer.out, layer.in, spec);
    if (res.nanCount === scores.length) throw new InputError(`metric ${method.label} yields NaN for every weight of ${layer.name}`);
    nanCount = res.nanCount;
    problem = scoresProblem(scores, layer.out, layer.in);
    mask = res.mask;
    applyMask(w, mask);
  }
  const s = maskSparsity(mask, layer.out, layer.in);
  return { name: layer.name, block: layer.block, out: layer.out, in: layer.in, pruned: s.pruned, sparsity: s.sparsity, rowMin: s.rowMin, rowMax: s.rowMax, nanCount, ...(problem ? { problem } : {}) };
}
