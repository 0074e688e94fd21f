/**
 * What the store knows of a run's settings (sparsity and pattern pairs): their names and how
 * the perplexities of one candidate over several settings combine into its fitness.
 */

/** A setting's name, as the evaluations table stores it: `SPARSITY:unstructured`, or the N:M pattern (`2:4`). */
export function settingLabelOf(sparsity: unknown, pattern: unknown): string {
  const p = String(pattern ?? 'unstructured').trim().toLowerCase();
  if (p !== 'unstructured') return p.replace(/ /g, '');
  return sparsity === undefined || sparsity === null ? 'unstructured' : `${sparsity as number}:unstructured`;
}

/** Every setting of a stored run configuration, by name, in order. */
export function runSettingLabels(config: Record<string, unknown>): string[] {
  const list = config.settings as { sparsity: number; pattern: string }[] | undefined;
  return list?.length ? list.map((x) => settingLabelOf(x.sparsity, x.pattern)) : [settingLabelOf(config.sparsity, config.pattern)];
}

/**
 * exp(mean(log x)): a robust fitness over several settings (a 10% worse perplexity counts the
 * same at every setting). One value is returned as it is, so a run of one setting is unchanged.
 */
export function geometricMean(xs: readonly number[]): number {
  if (xs.length === 1) return xs[0]!;
  let s = 0;
  for (const x of xs) s += Math.log(x);
  return Math.exp(s / xs.length);
}
