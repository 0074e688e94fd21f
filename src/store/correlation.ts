/**
 * Rank correlations for the search report: Spearman's rho and Kendall's tau-b, both with
 * ties handled (tree features are small integers, so ties are the rule), and two-sided
 * p-values (Spearman: Student t with n-2 df; Kendall: normal approximation with the
 * tie-corrected variance), as scipy.stats computes them.
 */

export interface Correlation {
  /** The coefficient; NaN when undefined (n < 3 or a constant variable). */
  r: number;
  /** Two-sided p-value for r = 0; NaN when r is. */
  p: number;
  n: number;
}

/** Average ranks (1-based); ties share the mean of the ranks they span. */
export function ranks(x: readonly number[]): number[] {
  const idx = x.map((_, i) => i).sort((a, b) => x[a]! - x[b]! || a - b);
  const out = new Array<number>(x.length);
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && x[idx[j + 1]!] === x[idx[i]!]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) out[idx[k]!] = avg;
    i = j + 1;
  }
  return out;
}

export function pearson(x: readonly number[], y: readonly number[]): number {
  const n = x.length;
  if (n !== y.length) throw new Error('pearson: lengths differ');
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i]!;
    my += y[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return NaN;
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

function checkPairs(x: readonly number[], y: readonly number[], what: string): void {
  if (x.length !== y.length) throw new Error(`${what}: lengths differ (${x.length} vs ${y.length})`);
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i]!) || !Number.isFinite(y[i]!)) throw new Error(`${what}: non-finite value at ${i}`);
}

/** Spearman's rho: Pearson correlation of average ranks. */
export function spearman(x: readonly number[], y: readonly number[]): Correlation {
  checkPairs(x, y, 'spearman');
  const n = x.length;
  if (n < 3) return { r: NaN, p: NaN, n };
  const r = pearson(ranks(x), ranks(y));
  if (Number.isNaN(r)) return { r, p: NaN, n };
  const df = n - 2;
  if (Math.abs(r) >= 1) return { r, p: 0, n };
  const t = r * Math.sqrt(df / (1 - r * r));
  return { r, p: studentTwoSided(t, df), n };
}

/** Kendall's tau-b (tie-adjusted), O(n^2): fine for the few thousand individuals of a run. */
export function kendallTauB(x: readonly number[], y: readonly number[]): Correlation {
  checkPairs(x, y, 'kendall');
  const n = x.length;
  if (n < 3) return { r: NaN, p: NaN, n };
  let s = 0; // concordant - discordant
  let n1 = 0; // pairs tied in x
  let n2 = 0; // pairs tied in y
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const dx = Math.sign(x[i]! - x[j]!);
      const dy = Math.sign(y[i]! - y[j]!);
      if (dx === 0) n1++;
      if (dy === 0) n2++;
      s += dx * dy;
    }
  }
  const n0 = (n * (n - 1)) / 2;
  const denom = Math.sqrt((n0 - n1) * (n0 - n2));
  if (denom === 0) return { r: NaN, p: NaN, n };
  const tau = s / denom;
  // Variance of S under independence with ties (Kendall 1970; scipy's asymptotic method).
  const tx = tieGroups(x);
  const ty = tieGroups(y);
  const sum = (g: number[], f: (t: number) => number): number => g.reduce((a, t) => a + f(t), 0);
  const v0 = n * (n - 1) * (2 * n + 5);
  const vt = sum(tx, (t) => t * (t - 1) * (2 * t + 5));
  const vu = sum(ty, (t) => t * (t - 1) * (2 * t + 5));
  const v1 = sum(tx, (t) => t * (t - 1)) * sum(ty, (t) => t * (t - 1));
  const v2 = sum(tx, (t) => t * (t - 1) * (t - 2)) * sum(ty, (t) => t * (t - 1) * (t - 2));
  const varS = (v0 - vt - vu) / 18 + v1 / (2 * n * (n - 1)) + v2 / (9 * n * (n - 1) * (n - 2));
  const z = s / Math.sqrt(varS);
  return { r: Math.max(-1, Math.min(1, tau)), p: normalTwoSided(z), n };
}

/** Sizes of the groups of equal values (only groups of 2 or more matter). */
function tieGroups(x: readonly number[]): number[] {
  const counts = new Map<number, number>();
  for (const v of x) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.values()].filter((c) => c > 1);
}

/** P(|Z| >= |z|) for a standard normal Z. */
export function normalTwoSided(z: number): number {
  return erfc(Math.abs(z) / Math.SQRT2);
}

/** Complementary error function (Chebyshev fit from Numerical Recipes, relative error < 1.2e-7). */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** P(|T| >= |t|) for Student's t with df degrees of freedom. */
export function studentTwoSided(t: number, df: number): number {
  return betaRegularized(df / (df + t * t), df / 2, 0.5);
}

function logGamma(x: number): number {
  // Lanczos approximation (g = 7, n = 9).
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularized incomplete beta I_x(a, b), by Lentz's continued fraction. */
export function betaRegularized(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lbeta = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  if (x > (a + 1) / (a + b + 2)) return 1 - betaRegularized(1 - x, b, a);
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-14) break;
  }
  return (Math.exp(lbeta) * h) / a;
}
