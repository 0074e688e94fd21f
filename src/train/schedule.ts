/** Learning-rate schedule: linear warm-up, then cosine decay to a floor (nanoGPT / LLaMA style). */
export interface ScheduleOptions {
  lr: number;
  minLr: number;
  /** Warm-up steps (the rate rises linearly over them). */
  warmup: number;
  /** Total steps; the cosine reaches minLr at the last one. */
  steps: number;
}

/** Rate for step `step` (0-based). */
export function learningRate(step: number, o: ScheduleOptions): number {
  if (o.warmup > 0 && step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  const span = Math.max(1, o.steps - 1 - o.warmup);
  const t = Math.min(1, Math.max(0, (step - o.warmup) / span));
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * t));
}
