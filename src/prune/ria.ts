/**
 * RIA, Relative Importance and Activations (Zhang et al., ICLR 2024):
 * score = (|W|/Σ_row|W| + |W|/Σ_col|W|) · sqrt(X)^a with a = 0.5 by default, where the
 * row sum runs over a weight's output row (its inputs) and the column sum over its
 * input column (its outputs). The column sums make it more than a per-weight
 * expression over {W, G, X}, so it has its own kernel rather than a metric tree.
 */

/** RIA scores for weight [rows, cols] (PyTorch layout, signed or absolute) and X [cols]. */
export function riaScores(w: Float32Array, rows: number, cols: number, x: Float32Array, a = 0.5, out?: Float32Array): Float32Array {
  if (w.length !== rows * cols) throw new Error(`riaScores: ${w.length} weights for [${rows},${cols}]`);
  if (x.length !== cols) throw new Error(`riaScores: X has ${x.length} values for ${cols} columns`);
  const res = out ?? new Float32Array(rows * cols);
  const colSum = new Float64Array(cols);
  const rowSum = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const ro = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) {
      const v = Math.abs(w[ro + c]!);
      s += v;
      colSum[c] += v;
    }
    rowSum[r] = s;
  }
  const act = new Float64Array(cols);
  for (let c = 0; c < cols; c++) act[c] = Math.pow(Math.sqrt(x[c]!), a);
  for (let r = 0; r < rows; r++) {
    const ro = r * cols;
    const rs = rowSum[r]!;
    for (let c = 0; c < cols; c++) {
      const v = Math.abs(w[ro + c]!);
      // 0/0 (an all-zero row or column) contributes 0, as a pruned-out weight should.
      const rel = (rs > 0 ? v / rs : 0) + (colSum[c]! > 0 ? v / colSum[c]! : 0);
      res[ro + c] = rel * act[c]!;
    }
  }
  return res;
}
