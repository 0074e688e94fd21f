/**
 * Pruning masks from scores, per output row as Wanda and Pruner-Zero prune: the lowest
 * scores go. Ties are broken stably by column index (the lower index is pruned first), as
 * torch.sort(stable=True) does. NaN scores sort above +inf (kept), again as torch.sort
 * orders them; they are counted in `nanCount` so callers can report or reject them. -0 and
 * +0 are equal.
 *
 * Scores are compared through an order-preserving uint32 key of their float32 bits, and the
 * k-th smallest key of a row is found by a 4-round radix select (linear time, no sort).
 */
import { InputError } from '../errors.ts';

export interface MaskResult {
  /** 1 = pruned, [rows * cols]. */
  mask: Uint8Array;
  /** Scores that were NaN (treated as larger than +inf, so kept unless a row must lose them). */
  nanCount: number;
  /** Number of pruned weights. */
  pruned: number;
}

const NAN_KEY = 0xffffffff;

/** Order-preserving key of a float32 bit pattern; all NaNs share the top key. */
function keyOf(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return NAN_KEY;
  if (bits === (0x80000000 | 0)) return 0x80000000; // -0 == +0
  return bits < 0 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0;
}

function checkScores(scores: Float32Array, rows: number, cols: number, what: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new InputError(`${what}: rows and cols must be non-negative integers, got ${rows} x ${cols}`);
  }
  if (!(scores instanceof Float32Array) || scores.length !== rows * cols) {
    throw new InputError(`${what}: scores must be a Float32Array of ${rows}x${cols} = ${rows * cols} values, got ${scores?.length}`);
  }
}

/**
 * In each row prune exactly floor(cols * sparsity) weights with the lowest scores.
 */
export function unstructuredMask(scores: Float32Array, rows: number, cols: number, sparsity: number): MaskResult {
  checkScores(scores, rows, cols, 'unstructured mask');
  if (!(sparsity >= 0 && sparsity <= 1)) {
    throw new InputError(`unstructured mask: sparsity must be in [0, 1], got ${sparsity}`);
  }
  const k = Math.floor(cols * sparsity);
  const bits = new Int32Array(scores.buffer, scores.byteOffset, scores.length);
  const mask = new Uint8Array(rows * cols);
  const keys = new Uint32Array(cols);
  const cand = new Uint32Array(cols);
  const hist = new Uint32Array(256);
  let nanCount = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) {
      const key = keyOf(bits[base + j]!);
      if (key === NAN_KEY) nanCount++;
      keys[j] = key;
    }
    if (k === 0) continue;
    if (k === cols) {
      mask.fill(1, base, base + cols);
      continue;
    }
    // Radix select of the k-th smallest key (0-based rank k-1), most significant byte first.
    let rank = k - 1;
    let src: Uint32Array = keys;
    let len = cols;
    let prefix = 0;
    for (let shift = 24; shift >= 0; shift -= 8) {
      hist.fill(0);
      for (let i = 0; i < len; i++) hist[(src[i]! >>> shift) & 255]!++;
      let b = 0;
      while (rank >= hist[b]!) {
        rank -= hist[b]!;
        b++;
      }
      prefix = (prefix | (b << shift)) >>> 0;
      if (shift > 0) {
        let m = 0;
        for (let i = 0; i < len; i++) {
          const v = src[i]!;
          if (((v >>> shift) & 255) === b) cand[m++] = v;
        }
        src = cand;
        len = m;
      }
    }
    // prefix is the threshold key; `rank` ties at the threshold are below the cut, plus one.
    const threshold = prefix;
    let ties = rank + 1;
    for (let j = 0; j < cols; j++) {
      const key = keys[j]!;
      if (key < threshold) mask[base + j] = 1;
      else if (key === threshold && ties > 0) {
        mask[base + j] = 1;
        ties--;
      }
    }
  }
  return { mask, nanCount, pruned: rows * k };
}

/**
 * N:M semi-structured: in each row, the n lowest scores of every m consecutive columns.
 */
export function nmMask(scores: Float32Array, rows: number, cols: number, n: number, m: number): MaskResult {
  checkScores(scores, rows, cols, 'N:M mask');
  if (!Number.isInteger(m) || m < 1 || !Number.isInteger(n) || n < 0 || n > m) {
    throw new InputError(`N:M mask: need integers 0 <= N <= M and M >= 1, got ${n}:${m}`);
  }
  if (cols % m !== 0) {
    throw new InputError(`N:M mask: the input dimension ${cols} is not a multiple of M = ${m}`);
  }
  const bits = new Int32Array(scores.buffer, scores.byteOffset, scores.length);
  const mask = new Uint8Array(rows * cols);
  const keys = new Uint32Array(m);
  let nanCount = 0;
  const total = rows * cols;
  for (let g = 0; g < total; g += m) {
    for (let t = 0; t < m; t++) {
      const key = keyOf(bits[g + t]!);
      if (key === NAN_KEY) nanCount++;
      keys[t] = key;
    }
    for (let c = 0; c < n; c++) {
      // The lowest key not yet pruned; strict < keeps the lower index on ties.
      let best = -1;
      let bestKey = 0;
      for (let t = 0; t < m; t++) {
        if (mask[g + t]) continue;
        const key = keys[t]!;
        if (best < 0 || key < bestKey) {
          best = t;
          bestKey = key;
        }
      }
      mask[g + best] = 1;
    }
  }
  return { mask, nanCount, pruned: (total / m) * n };
}
