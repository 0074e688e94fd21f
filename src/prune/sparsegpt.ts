/**
 * SparseGPT (Frantar & Alistarh, 2023): prune one linear layer and reconstruct the
 * remaining weights with OBS updates, following the reference `fasterprune`
 * (IST-DASLab/sparsegpt, also shipped with Wanda): dead inputs zeroed, dampening
 * λ = percdamp · mean(diag H), upper Cholesky factor of H⁻¹, lazy batch updates over
 * blocks of 128 columns, saliency w² / [H⁻¹]²_jj.
 *
 * One deliberate difference: for unstructured sparsity the reference picks one
 * threshold over a whole 128-column block (all rows together); here the mask of each
 * block is chosen per output row, so every row reaches exactly the same sparsity as
 * the other methods of the harness (per-row comparison group). N:M follows the
 * reference exactly (per row, per M consecutive columns, chosen on the updated weights).
 */

export interface SparseGptOptions {
  /** Fraction of weights pruned per row (unstructured). Ignored for N:M. */
  sparsity: number;
  /** N:M: prune n of every m consecutive inputs of a row (0 = unstructured). */
  n?: number;
  m?: number;
  /** Columns per lazy-update block (reference: 128). */
  blockSize?: number;
  /** Dampening as a fraction of mean(diag H) (reference: 0.01). */
  percDamp?: number;
}

export interface SparseGptResult {
  /** 1 = pruned, [rows*cols]. */
  mask: Uint8Array;
  /** Σ over rows of the OBS loss estimate, as the reference reports. */
  loss: number;
}

/**
 * Accumulates the input Gram matrix Σ x xᵀ of a layer over calibration sequences.
 * Preparing it (prepared, prepareWith + takeHessian) turns the sum into H⁻¹'s factor
 * in its own memory: a 5632-wide input's matrix is 254 MB, and a copy per step of the
 * preparation is what kept SparseGPT's peak memory over a 1B checkpoint's size.
 */
export class HessianAccumulator {
  /** In shared memory, so that worker threads read the factor made here without a copy. */
  readonly gram: Float64Array;
  nsamples = 0;
  private taken = false;
  constructor(readonly cols: number) {
    this.gram = new Float64Array(new SharedArrayBuffer(8 * cols * cols));
  }
  /** Add a Gram block Σ_t x_t x_tᵀ computed over `sequences` sequences. */
  add(gram: ArrayLike<number>, sequences: number): void {
    this.check();
    const g = this.gram;
    for (let i = 0; i < g.length; i++) g[i] += gram[i]!;
    this.nsamples += sequences;
  }
  private readonly prep = new Map<string, PreparedHessian | Promise<PreparedHessian>>();
  /** The prepared Hessian, computed once (by `how`, default plain JavaScript) for all layers reading this input. */
  prepared(percDamp = 0.01): PreparedHessian {
    return this.prepareWith(`js:${percDamp}`, () => prepareHessian(this.takeHessian(), this.cols, percDamp)) as PreparedHessian;
  }
  /** Memoised preparation under `key` (e.g. an onnxruntime-backed one for wide layers). */
  prepareWith<T extends PreparedHessian | Promise<PreparedHessian>>(key: string, make: () => T): T {
    if (!this.prep.has(key)) this.prep.set(key, make());
    return this.prep.get(key) as T;
  }
  /** H = (2/n) Σ x xᵀ with n the number of sequences, the reference's scaling (a copy). */
  hessian(): Float64Array {
    this.check();
    return this.scaled(new Float64Array(this.gram.length));
  }
  /** H as hessian(), made in the accumulator's own memory for a preparation to consume: nothing can be added or taken after. */
  takeHessian(): Float64Array {
    this.check();
    this.taken = true;
    return this.scaled(this.gram);
  }
  private scaled(h: Float64Array): Float64Array {
    const s = this.nsamples > 0 ? 2 / this.nsamples : 0;
    for (let i = 0; i < h.length; i++) h[i] = this.gram[i]! * s;
    return h;
  }
  private check(): void {
    if (this.taken) throw new Error('HessianAccumulator: the sum was consumed by its preparation');
  }
}

/** In-place lower Cholesky factor of a symmetric positive-definite [n,n] matrix; the upper triangle is zeroed. */
export function choleskyLower(a: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j]!;
    for (let k = 0; k < j; k++) d -= a[rj + k]! * a[rj + k]!;
    if (!(d > 0)) throw new Error(`SparseGPT: Hessian is not positive definite (pivot ${j} = ${d})`);
    const ljj = Math.sqrt(d);
    a[rj + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j]!;
      for (let k = 0; k < j; k++) s -= a[ri + k]! * a[rj + k]!;
      a[ri + j] = s / ljj;
    }
    for (let k = j + 1; k < n; k++) a[rj + k] = 0;
  }
}

/**
 * Inverse of a lower-triangular [n,n] matrix (returns a new lower-triangular matrix),
 * row by row (row i = (e_i - Σ_k<i L_ik · row k) / L_ii), so every inner loop runs
 * along contiguous memory.
 */
export function invertLower(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    inv[ri + i] = 1;
    for (let k = 0; k < i; k++) {
      const c = l[ri + k]!;
      if (c === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) inv[ri + j] -= c * inv[rk + j]!;
    }
    const d = 1 / l[ri + i]!;
    for (let j = 0; j <= i; j++) inv[ri + j] *= d;
  }
  return inv;
}

/**
 * Upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U), the factor the reference gets from
 * cholesky(H) -> cholesky_inverse -> cholesky(upper=True), here with half the work:
 * with P the reversal permutation and P H P = M Mᵀ (M lower), H⁻¹ = (P M⁻¹ P)ᵀ (P M⁻¹ P)
 * and P M⁻¹ P is upper triangular, so U = P M⁻¹ P (the Cholesky factor is unique).
 * `h` is consumed.
 */
export function upperCholeskyOfInverse(h: Float64Array, n: number): Float64Array {
  reverseSquare(h);
  choleskyLower(h, n);
  return reversedInverseToUpper(invertLower(h, n));
}

/** Reverse the rows and columns of a square matrix in place: (PHP)_ij = H_{n-1-i, n-1-j}. */
export function reverseSquare(h: Float64Array): void {
  for (let a = 0, b = h.length - 1; a < b; a++, b--) {
    const t = h[a]!;
    h[a] = h[b]!;
    h[b] = t;
  }
}

/**
 * U = P M⁻¹ P from M⁻¹ (lower triangular, zeros above the diagonal), in place: on the
 * row-major array, reversing rows and columns is reversing the whole array.
 */
export function reversedInverseToUpper(mi: Float64Array): Float64Array {
  reverseSquare(mi);
  return mi;
}

/**
 * Mark (mask[at + j] = 1) the k smallest of v[from..from+len) at offset `at` of the
 * mask, ties going to the lower index: the first k of the indices sorted by (v, index).
 * Found through the k-th smallest value from a native numeric sort of a copy (no
 * comparator calls): all below it, then those equal to it in index order.
 */
export function markSmallest(v: Float64Array, from: number, len: number, k: number, sorted: Float64Array, mask: Uint8Array, at: number): void {
  if (k <= 0) return;
  const s = sorted.subarray(0, len);
  s.set(v.subarray(from, from + len));
  s.sort();
  const kth = s[k - 1]!;
  let left = k;
  for (let j = from; j < from + len; j++) if (v[j]! < kth) (mask[at + j] = 1), left--;
  for (let j = from; j < from + len && left > 0; j++) if (v[j] === kth) (mask[at + j] = 1), left--;
}

/** H⁻¹'s upper Cholesky factor after the reference's dead-input fix and dampening, and the dead inputs. */
export interface PreparedHessian {
  cols: number;
  hinv: Float64Array;
  /** 1 where H_jj = 0 (an input never active in calibration). */
  dead: Uint8Array;
}

/**
 * The reference's preparation of H (consumed): dead inputs get H_jj = 1, then
 * λ = percDamp · mean(diag H) is added to the diagonal, then U with H⁻¹ = Uᵀ U.
 */
export function prepareHessian(H: Float64Array, cols: number, percDamp = 0.01): PreparedHessian {
  return { cols, dead: dampHessian(H, cols, percDamp), hinv: upperCholeskyOfInverse(H, cols) };
}

/** The reference's fix of dead inputs (H_jj = 0 -> 1) and dampening, in place; returns the dead inputs. */
export function dampHessian(H: Float64Array, cols: number, percDamp = 0.01): Uint8Array {
  if (H.length !== cols * cols) throw new Error(`sparseGpt: Hessian of ${H.length} values for ${cols} columns`);
  const dead = new Uint8Array(cols);
  for (let j = 0; j < cols; j++) {
    if (H[j * cols + j] === 0) {
      H[j * cols + j] = 1;
      dead[j] = 1;
    }
  }
  let meanDiag = 0;
  for (let j = 0; j < cols; j++) meanDiag += H[j * cols + j]!;
  const damp = (percDamp * meanDiag) / cols;
  for (let j = 0; j < cols; j++) H[j * cols + j] += damp;
  return dead;
}

/**
 * One lazy batch update the OBS loop asks for: W[:, i2:] -= Err1 · Hinv[i1:i2, i2:],
 * Err1 = err[:, 0:count] (row stride blockSize).
 */
export interface LazyUpdate {
  W: Float64Array;
  rows: number;
  cols: number;
  err: Float64Array;
  blockSize: number;
  count: number;
  i1: number;
  i2: number;
  hinv: Float64Array;
}

/** The lazy update in plain float64 JavaScript (small layers; the reference's exact arithmetic order aside). */
export function lazyUpdateJs(u: LazyUpdate): void {
  const { W, rows, cols, err, blockSize, count, i1, i2, hinv } = u;
  for (let r = 0; r < rows; r++) {
    const ro = r * cols;
    const eo = r * blockSize;
    for (let i = 0; i < count; i++) {
      const e = err[eo + i]!;
      if (e === 0) continue;
      const hrow = (i1 + i) * cols;
      for (let j = i2; j < cols; j++) W[ro + j] -= e * hinv[hrow + j]!;
    }
  }
}

/**
 * The working state of the OBS loop over `rows` output rows: the weights in float64,
 * the mask, the lazy-update errors and each row's share of the loss. Every row's
 * entries depend on that row and H⁻¹ only, so a worker thread can run the loop on a
 * view of its rows of shared buffers and reach the same bits as one loop over all rows.
 */
export interface ObsBuffers {
  /** [rows, cols] */
  W: Float64Array;
  /** 1 = pruned, [rows, cols] */
  mask: Uint8Array;
  /** Err1 of the current block, [rows, blockSize] */
  err: Float64Array;
  /** Per row Σ (w - q)² / [H⁻¹]²_jj / 2 */
  loss: Float64Array;
}

/**
 * Buffers for `rows` x `cols` weights, W filled from `w`, mask and loss zeroed; `memory`
 * gives the memory of each (at least the bytes asked; default: new ArrayBuffers).
 */
export function obsBuffers(w: Float32Array, rows: number, cols: number, blockSize: number, memory: (name: keyof ObsBuffers, bytes: number) => ArrayBufferLike = (_, bytes) => new ArrayBuffer(bytes)): ObsBuffers {
  if (w.length !== rows * cols) throw new Error(`sparseGpt: ${w.length} weights for [${rows},${cols}]`);
  const W = new Float64Array(memory('W', 8 * rows * cols), 0, rows * cols);
  W.set(w);
  const mask = new Uint8Array(memory('mask', rows * cols), 0, rows * cols).fill(0);
  const loss = new Float64Array(memory('loss', 8 * rows), 0, rows).fill(0);
  return { W, mask, err: new Float64Array(memory('err', 8 * rows * blockSize), 0, rows * blockSize), loss };
}

/** The rows [r0, r1) of `b` (views of the same memory). */
export function obsRows(b: ObsBuffers, cols: number, blockSize: number, r0: number, r1: number): ObsBuffers {
  return { W: b.W.subarray(r0 * cols, r1 * cols), mask: b.mask.subarray(r0 * cols, r1 * cols), err: b.err.subarray(r0 * blockSize, r1 * blockSize), loss: b.loss.subarray(r0, r1) };
}

/** Write the result into `w` (pruned entries exactly 0) and total the loss in row order. */
export function finishObs(b: ObsBuffers, w: Float32Array): SparseGptResult {
  for (let i = 0; i < w.length; i++) w[i] = b.mask[i] ? 0 : b.W[i]!;
  let loss = 0;
  for (let r = 0; r < b.loss.length; r++) loss += b.loss[r]!;
  return { mask: b.mask, loss };
}

/**
 * Prune `w` ([rows, cols], PyTorch layout, updated IN PLACE with the reconstructed
 * weights, pruned entries exactly 0) given H = (2/n) Σ x xᵀ ([cols, cols], consumed).
 */
export function sparseGpt(w: Float32Array, rows: number, cols: number, hessian: Float64Array, opts: SparseGptOptions): SparseGptResult {
  const b = obsBuffers(w, rows, cols, opts.blockSize ?? 128);
  for (const u of obsSteps(b, rows, cols, prepareHessian(hessian, cols, opts.percDamp), opts)) lazyUpdateJs(u);
  return finishObs(b, w);
}

/**
 * SparseGPT with a prepared Hessian (shared by the layers reading one input) and the
 * lazy batch updates (the rows x cols² part of the work) done by `lazy`, e.g. a float32
 * matrix product in onnxruntime for large layers.
 */
export async function sparseGptPrepared(w: Float32Array, rows: number, prep: PreparedHessian, opts: SparseGptOptions, lazy: (u: LazyUpdate) => void | Promise<void> = lazyUpdateJs): Promise<SparseGptResult> {
  const b = obsBuffers(w, rows, prep.cols, opts.blockSize ?? 128);
  for (const u of obsSteps(b, rows, prep.cols, prep, opts)) await lazy(u);
  return finishObs(b, w);
}

/**
 * The OBS loop over blocks of columns (see the file comment) on the rows of `b`;
 * yields each lazy batch update for the caller to apply to W before it continues.
 * Within a block it runs row by row (each row's arithmetic is the same in any row
 * order, and a row's block stays in cache).
 */
export function* obsSteps(b: ObsBuffers, rows: number, cols: number, prep: PreparedHessian, opts: SparseGptOptions): Generator<LazyUpdate, void, void> {
  const blockSize = opts.blockSize ?? 128;
  const n = opts.n ?? 0;
  const m = opts.m ?? 0;
  const { W, mask, err, loss } = b;
  if (W.length !== rows * cols || err.length !== rows * blockSize) throw new Error(`sparseGpt: buffers do not fit [${rows},${cols}] with blocks of ${blockSize}`);
  if (n > 0 && blockSize % m !== 0) throw new Error(`sparseGpt: block size ${blockSize} is not a multiple of M=${m}`);
  const Hinv = prep.hinv;
  // Dead inputs: W[:, j] = 0 (reference behaviour).
  for (let j = 0; j < cols; j++) if (prep.dead[j]) for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
  const tmp = new Float64Array(cols);
  const sorted = new Float64Array(Math.max(blockSize, m));
  /** Mark the k smallest saliencies w² / [H⁻¹]²_jj of row offset `ro` among columns [from, from+len). */
  const prune = (ro: number, from: number, len: number, k: number) => {
    for (let j = from; j < from + len; j++) {
      const d = Hinv[j * cols + j]!;
      tmp[j] = (W[ro + j]! * W[ro + j]!) / (d * d);
    }
    markSmallest(tmp, from, len, k, sorted, mask, ro);
  };

  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(i1 + blockSize, cols);
    const count = i2 - i1;
    // Unstructured: the block mask of each row is chosen from the block's current weights.
    const k = n === 0 ? Math.floor(opts.sparsity * i2) - Math.floor(opts.sparsity * i1) : 0;
    for (let r = 0; r < rows; r++) {
      const ro = r * cols;
      const eo = r * blockSize;
      if (k > 0) prune(ro, i1, count, k);
      let l = loss[r]!;
      for (let i = 0; i < count; i++) {
        const col = i1 + i;
        const d = Hinv[col * cols + col]!;
        if (n > 0 && i % m === 0) prune(ro, col, Math.min(m, count - i), Math.min(n, m, count - i));
        const wv = W[ro + col]!;
        const q = mask[ro + col] ? 0 : wv;
        const e = (wv - q) / d;
        l += ((wv - q) * (wv - q)) / (d * d) / 2;
        err[eo + i] = e;
        W[ro + col] = q;
        if (e !== 0) {
          const hrow = col * cols;
          for (let j = col + 1; j < i2; j++) W[ro + j] -= e * Hinv[hrow + j]!;
        }
      }
      loss[r] = l;
    }
    // Lazy batch update of the columns after the block: W[:, i2:] -= Err1 · Hinv[i1:i2, i2:].
    if (i2 < cols) yield { W, rows, cols, err, blockSize, count, i1, i2, hinv: Hinv };
  }
}
