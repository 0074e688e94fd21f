/**
 * AdamW (Loshchilov & Hutter): Adam moments with bias correction and weight decay
 * applied to the weights directly (decoupled), in place on Float32Arrays.
 */
export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export interface AdamWSlot {
  param: Float32Array;
  m: Float32Array;
  v: Float32Array;
  /** Whether weight decay applies (not for norm weights). */
  decay: boolean;
}

/** Global L2 norm of a set of gradients (accumulated in float64). */
export function globalNorm(grads: Iterable<Float32Array>): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/**
 * One AdamW update of one tensor. `t` is the 1-based step count (for bias correction);
 * `gradScale` multiplies the gradient first (global-norm clipping).
 */
export function adamwUpdate(slot: AdamWSlot, grad: Float32Array, t: number, lr: number, o: AdamWOptions, gradScale = 1): void {
  const { param: p, m, v } = slot;
  const b1 = o.beta1, b2 = o.beta2;
  const c1 = 1 - b1 ** t;
  const c2 = 1 - b2 ** t;
  const stepSize = lr / c1;
  const sqrtC2 = Math.sqrt(c2);
  const decay = slot.decay ? 1 - lr * o.weightDecay : 1;
  for (let i = 0; i < p.length; i++) {
    const g = grad[i]! * gradScale;
    const mi = (m[i] = b1 * m[i]! + (1 - b1) * g);
    const vi = (v[i] = b2 * v[i]! + (1 - b2) * g * g);
    p[i] = p[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) / sqrtC2 + o.eps);
  }
}
