/**
 * Pruning masks from scores, per output row as Wanda and Pruner-Zero prune: the lowest
 * scores go. Ties are broken stably by column index (the lower index is pruned first), as
 * torch.sort(stable=True) does. NaN scores sort above +inf (kept), again as torch.sort
 * orders them; they are counted in `nanCount` so callers can report or reject them. -0 and
 * +0 are equal.
 *
 * Scores are compared through an order-preserving integer key of their float32 bits, and the
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
 *
 * Per row: (1) keys and a histogram of their top 11 bits; (2) one pass that marks every
 * weight whose top digit is below the threshold's digit through a lookup table (no
 * data-dependent branch: half the weights go, so a branch would mispredict half the time)
 * and collects the threshold digit's columns; (3) those few candidates are resolved by two
 * more radix rounds, or by an insertion sort when there are at most 48.
 */
export function unstructuredMask(scores: Float32Array, rows: number, cols: number, sparsity: number): MaskResult {
  checkScores(scores, rows, cols, 'unstructured mask');
  if (!(sparsity >= 0 && sparsity <= 1)) {
    throw new InputError(`unstructured mask: sparsity must be in [0, 1], got ${sparsity}`);
  }
  const k = Math.floor(cols * sparsity);
  const bits = new Int32Array(scores.buffer, scores.byteOffset, scores.length);
  const mask = new Uint8Array(rows * cols);
  // Signed order-preserving keys: +x -> bits, -x -> bits ^ 0x7fffffff, NaN -> int32 max.
  const keys = new Int32Array(cols);
  const cand = new Int32Array(cols); // column indices, in increasing order
  const hist = new Int32Array(2048);
  const below = new Uint8Array(2048); // 1 for top digits below the threshold's
  let nanCount = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    hist.fill(0);
    for (let j = 0; j < cols; j++) {
      let v = bits[base + j]!;
      if ((v & 0x7fffffff) > 0x7f800000) {
        v = 0x7fffffff;
        nanCount++;
      } else if (v < 0) {
        v = v === -2147483648 ? 0 : v ^ 0x7fffffff; // -0 -> +0
      }
      keys[j] = v;
      hist[(v >>> 21) ^ 1024]!++; // unsigned digit order
    }
    if (k === 0) continue;
    if (k === cols) {
      mask.fill(1, base, base + cols);
      continue;
    }
    let rank = k - 1;
    let b = 0;
    while (rank >= hist[b]!) rank -= hist[b++]!;
    below.fill(1, 0, b);
    below.fill(0, b);
    const top = b ^ 1024;
    let m = 0;
    for (let j = 0; j < cols; j++) {
      const v = keys[j]!;
      mask[base + j] = below[(v >>> 21) ^ 1024]!;
      if (v >>> 21 === top) cand[m++] = j;
    }
    if (m > 48) {
      // Radix rounds on bits 10..20 then 0..9; lower digits are pruned as they are found.
      for (let round = 0; round < 2; round++) {
        const shift = round === 0 ? 10 : 0;
        const width = round === 0 ? 2047 : 1023;
        hist.fill(0, 0, width + 1);
        for (let t = 0; t < m; t++) hist[(keys[cand[t]!]! >>> shift) & width]!++;
        let d = 0;
        while (rank >= hist[d]!) rank -= hist[d++]!;
        let w = 0;
        for (let t = 0; t < m; t++) {
          const j = cand[t]!;
          const digit = (keys[j]! >>> shift) & width;
          if (digit < d) mask[base + j] = 1;
          else if (digit === d) cand[w++] = j;
        }
        m = w;
      }
      // Every remaining candidate has the threshold key, in column order.
    } else {
      // Few candidates: sort them by (key, column).
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
    }
    for (let t = 0; t <= rank; t++) mask[base + cand[t]!] = 1;
  }
  return { mask, nanCount, pruned: rows * k };
}

/** Signed order-preserving key of float32 bits (see unstructuredMask). */
function sortKey(v: number): number {
  if ((v & 0x7fffffff) > 0x7f800000) return 0x7fffffff;
  return v < 0 ? (v === -2147483648 ? 0 : v ^ 0x7fffffff) : v;
}

/**
 * N:M semi-structured: in each row, the n lowest scores of every m consecutive columns.
 * Each group ranks its members by pairwise comparisons turned into 0/1 counts (no
 * data-dependent branches); 2:4-style groups of 4 have an unrolled path.
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
  const total = rows * cols;
  const mask = new Uint8Array(total);
  let nanCount = 0;
  for (let i = 0; i < total; i++) if ((bits[i]! & 0x7fffffff) > 0x7f800000) nanCount++;
  if (m === 4) ranks4(bits, mask, n);
  else ranksGeneral(bits, mask, n, m);
  return { mask, nanCount, pruned: (total / m) * n };
}

/** Groups of 4 (2:4 and friends), unrolled: six comparisons rank the four members. */
function ranks4(bits: Int32Array, mask: Uint8Array, n: number): void {
  const total = bits.length;
  for (let g = 0; g < total; g += 4) {
    const k0 = sortKey(bits[g]!);
    const k1 = sortKey(bits[g + 1]!);
    const k2 = sortKey(bits[g + 2]!);
    const k3 = sortKey(bits[g + 3]!);
    // cUT = 1 when u goes before t (lower key, or equal key and lower index).
    const c01 = +(k0 <= k1);
    const c02 = +(k0 <= k2);
    const c03 = +(k0 <= k3);
    const c12 = +(k1 <= k2);
    const c13 = +(k1 <= k3);
    const c23 = +(k2 <= k3);
    mask[g] = +(3 - c01 - c02 - c03 < n);
    mask[g + 1] = +(c01 + 2 - c12 - c13 < n);
    mask[g + 2] = +(c02 + c12 + 1 - c23 < n);
    mask[g + 3] = +(c03 + c13 + c23 < n);
  }
}

/** Any group size: rank[t] = members that go before t, by pairwise 0/1 comparisons. */
function ranksGeneral(bits: Int32Array, mask: Uint8Array, n: number, m: number): void {
  const total = bits.length;
  const keys = new Int32Array(m);
  const rank = new Int32Array(m);
  for (let g = 0; g < total; g += m) {
    for (let t = 0; t < m; t++) {
      keys[t] = sortKey(bits[g + t]!);
      rank[t] = 0;
    }
    for (let t = 1; t < m; t++) {
      const kt = keys[t]!;
      let rt = 0;
      for (let u = 0; u < t; u++) {
        const c = +(keys[u]! <= kt);
        rt += c;
        rank[u] += 1 - c;
      }
      rank[t] += rt;
    }
    for (let t = 0; t < m; t++) mask[g + t] = +(rank[t]! < n);
  }
}
