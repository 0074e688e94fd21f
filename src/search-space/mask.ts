/**
 * Pruning masks from scores, per output row as Wanda and Pruner-Zero prune: the lowest
 * scores go. Ties are broken stably by column index (the lower index is pruned first), as
 * torch.sort(stable=True) does. NaN scores sort above +inf (kept), again as torch.sort
 * orders them; they are counted in `nanCount` so callers can report or reject them. -0 and
 * +0 are equal.
 *
 * Scores are compared through an order-preserving uint32 key of their float32 bits, and the
 * k-th smallest key of a row is found by a radix select over 11/11/10-bit digits that keeps
 * candidate column indices (linear time, no sort); ties at the threshold are then the first
 * candidates in column order.
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
  const cand = new Uint32Array(cols); // column indices, always in increasing order
  const hist = new Uint32Array(2048);
  let nanCount = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    // Keys, and a histogram of their top 11 bits (sign, exponent, 2 mantissa bits).
    hist.fill(0);
    for (let j = 0; j < cols; j++) {
      let v = bits[base + j]!;
      let key: number;
      if ((v & 0x7fffffff) > 0x7f800000) {
        key = NAN_KEY;
        nanCount++;
      } else {
        if (v === -2147483648) v = 0; // -0 -> +0
        key = (v ^ ((v >> 31) | 0x80000000)) >>> 0;
      }
      keys[j] = key;
      hist[key >>> 21]!++;
    }
    if (k === 0) continue;
    if (k === cols) {
      mask.fill(1, base, base + cols);
      continue;
    }
    // Radix select of the key of rank k-1: 11 + 11 + 10 bits, keeping candidate indices.
    let rank = k - 1;
    let b = 0;
    while (rank >= hist[b]!) rank -= hist[b++]!;
    let m = 0;
    for (let j = 0; j < cols; j++) if (keys[j]! >>> 21 === b) cand[m++] = j;
    let threshold = -1;
    if (m > 48) {
      let prefix = b << 21;
      for (const [shift, width] of [
        [10, 2047],
        [0, 1023],
      ] as const) {
        hist.fill(0, 0, width + 1);
        for (let t = 0; t < m; t++) hist[(keys[cand[t]!]! >>> shift) & width]!++;
        let d = 0;
        while (rank >= hist[d]!) rank -= hist[d++]!;
        let w = 0;
        for (let t = 0; t < m; t++) {
          const j = cand[t]!;
          if (((keys[j]! >>> shift) & width) === d) cand[w++] = j;
        }
        m = w;
        prefix |= d << shift;
      }
      threshold = prefix >>> 0; // every remaining candidate has this key, in index order
    } else {
      // Few candidates: sort them by (key, index) and read the threshold off.
      for (let t = 1; t < m; t++) {
        const j = cand[t]!;
        const kj = keys[j]!;
        let u = t - 1;
        while (u >= 0 && keys[cand[u]!]! > kj) {
          cand[u + 1] = cand[u]!;
          u--;
        }
        cand[u + 1] = j;
      }
      threshold = keys[cand[rank]!]!;
    }
    for (let j = 0; j < cols; j++) mask[base + j] = keys[j]! < threshold ? 1 : 0;
    // cand[0..rank] are the lowest candidates by (key, index): the ties that go.
    for (let t = 0; t <= rank; t++) mask[base + cand[t]!] = 1;
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
  const taken = new Uint8Array(m);
  let nanCount = 0;
  const total = rows * cols;
  for (let g = 0; g < total; g += m) {
    for (let t = 0; t < m; t++) {
      keys[t] = keyOf(bits[g + t]!);
      if (keys[t] === NAN_KEY) nanCount++;
      taken[t] = 0;
    }
    for (let c = 0; c < n; c++) {
      // The lowest key not yet taken; strict < keeps the lower index on ties.
      let best = -1;
      let bestKey = 0;
      for (let t = 0; t < m; t++) {
        if (taken[t]) continue;
        const key = keys[t]!;
        if (best < 0 || key < bestKey) {
          best = t;
          bestKey = key;
        }
      }
      taken[best] = 1;
      mask[g + best] = 1;
    }
  }
  return { mask, nanCount, pruned: (total / m) * n };
}
