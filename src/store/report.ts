/**
 * The report of a search run, computed from the database alone: leaderboard beside the
 * baselines, fitness curve, rank correlations of perplexity with tree features and of the
 * two budgets with each other, and the principles those numbers support. Every sentence in
 * `principles` is generated from a statistic that passed its threshold in this run.
 */
import type { DB } from './schema.ts';
import { kendallTauB, spearman, type Correlation } from './correlation.ts';
import { runSettingLabels, settingLabelOf } from './setting.ts';
import { baselineRows, baselines, curve, evaluationCounts, featureRows, FEATURES, fidelityPairs, leaderboard, pickRun, type CurvePoint, type EvaluationCounts, type RankedIndividual } from './queries.ts';
import type { BaselineInput, RunRow } from './store.ts';
import { linePlotScene, sceneSvg, type Scene } from './plot-svg.ts';
import { scenePng } from './plot-png.ts';
import { paretoFront, type ParetoPoint } from './pareto.ts';

export interface FeatureCorrelation {
  feature: string;
  spearman: Correlation;
  kendall: Correlation;
}

export interface Report {
  db: string;
  run: Pick<RunRow, 'id' | 'created' | 'status' | 'seed' | 'config' | 'modelPath' | 'modelSha256' | 'versions' | 'dataHashes' | 'seconds'>;
  counts: EvaluationCounts;
  leaderboard: RankedIndividual[];
  baselines: BaselineInput[];
  /** Individuals and baselines together, by perplexity on the search split (full budget). */
  combined: { name: string; kind: 'metric' | 'baseline'; ppl: number }[];
  curve: CurvePoint[];
  /** Best fitness at each tree size, where it beats every smaller tree. */
  pareto: ParetoPoint[];
  correlations: {
    /** Against short-budget perplexity of every evaluated individual. */
    features: FeatureCorrelation[];
    fidelity: { spearman: Correlation; kendall: Correlation } | null;
  };
  principles: string[];
  /** A run over several settings: their names, and each baseline at each (`baselines` holds their geometric means). */
  settings?: { labels: string[]; baselines: BaselineInput[] };
}

/** Significance threshold for a principle: strict, since ~25 features are tested at once. */
export const PRINCIPLE_P = 0.01;
const MIN_N = 10;

export function buildReport(db: DB, path: string, opts: { run?: number; top?: number } = {}): Report {
  const run = pickRun(db, path, opts.run);
  const board = leaderboard(db, run.id, opts.top ?? 10);
  const base = baselines(db, run.id);
  const rows = featureRows(db, run.id);
  const ppl = rows.map((r) => r.ppl);
  const features: FeatureCorrelation[] = FEATURES.map((f) => {
    const x = rows.map((r) => r.features[f]!);
    return { feature: f, spearman: spearman(x, ppl), kendall: kendallTauB(x, ppl) };
  });
  const pairs = fidelityPairs(db, run.id);
  const fidelity =
    pairs.length >= 3
      ? { spearman: spearman(pairs.map((p) => p.short), pairs.map((p) => p.full)), kendall: kendallTauB(pairs.map((p) => p.short), pairs.map((p) => p.full)) }
      : null;
  const combined = [
    ...board.filter((b) => b.fullPpl !== null).map((b) => ({ name: b.infix, kind: 'metric' as const, ppl: b.fullPpl! })),
    ...base.filter((b) => b.ppl !== null && b.split === String(run.config.fitnessData ?? b.split)).map((b) => ({ name: b.method, kind: 'baseline' as const, ppl: b.ppl! })),
  ].sort((a, b) => a.ppl - b.ppl);
  const report: Report = {
    db: path,
    run: {
      id: run.id,
      created: run.created,
      status: run.status,
      seed: run.seed,
      config: run.config,
      modelPath: run.modelPath,
      modelSha256: run.modelSha256,
      versions: run.versions,
      dataHashes: run.dataHashes,
      seconds: run.seconds,
    },
    counts: evaluationCounts(db, run.id),
    leaderboard: board,
    baselines: base,
    combined,
    curve: curve(db, run.id),
    pareto: paretoFront(db, run.id),
    correlations: { features, fidelity },
    principles: [],
  };
  const labels = runSettingLabels(run.config);
  if (labels.length > 1) report.settings = { labels, baselines: baselineRows(db, run.id) };
  report.principles = principles(report, rows);
  return report;
}

const f2 = (v: number): string => v.toFixed(2);
const fp = (p: number): string => (p < 0.001 ? 'p<0.001' : `p=${p.toFixed(3)}`);
const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function principles(r: Report, rows: ReturnType<typeof featureRows>): string[] {
  const out: string[] = [];
  const n = rows.length;
  // Feature effects that pass the threshold, strongest first.
  const sig = r.correlations.features
    .filter((c) => c.spearman.n >= MIN_N && Number.isFinite(c.spearman.r) && c.spearman.p < PRINCIPLE_P && c.kendall.p < PRINCIPLE_P)
    .sort((a, b) => Math.abs(b.spearman.r) - Math.abs(a.spearman.r))
    .slice(0, 6);
  for (const c of sig) {
    const better = c.spearman.r < 0; // lower perplexity is better
    const stat = `(Spearman rho=${f2(c.spearman.r)}, Kendall tau=${f2(c.kendall.r)}, ${fp(c.spearman.p)}, n=${c.spearman.n})`;
    if (c.feature.startsWith('uses_')) {
      const t = c.feature.slice(5);
      const withT = rows.filter((x) => x.features[c.feature] === 1).map((x) => x.ppl);
      const without = rows.filter((x) => x.features[c.feature] === 0).map((x) => x.ppl);
      const what = ['W', 'G', 'X'].includes(t) ? t : `the ${t} operator`;
      out.push(
        `Trees using ${what} reach ${better ? 'lower' : 'higher'} perplexity ${stat}; median short-budget perplexity ${f2(median(withT))} with ${t} vs ${f2(median(without))} without.`,
      );
    } else if (c.feature === 'size' || c.feature === 'depth') {
      out.push(`${c.feature === 'size' ? 'Larger' : 'Deeper'} trees reach ${better ? 'lower' : 'higher'} perplexity ${stat}.`);
    } else {
      out.push(`More occurrences of ${c.feature.slice(2)} go with ${better ? 'lower' : 'higher'} perplexity ${stat}.`);
    }
  }
  if (sig.length === 0 && n >= MIN_N) out.push(`No tree feature correlates with perplexity at ${fp(PRINCIPLE_P).replace('=', '<')} over the ${n} evaluated trees.`);
  if (n < MIN_N) out.push(`Too few evaluated trees (${n}) to say which features matter.`);

  // Terminals over-represented at the top of the leaderboard.
  const top = r.leaderboard.slice(0, 10);
  if (top.length >= 5 && n >= MIN_N) {
    const ids = new Set(top.map((t) => t.id));
    for (const t of ['W', 'G', 'X']) {
      const inTop = rows.filter((x) => ids.has(x.id) && x.features[`uses_${t}`] === 1).length;
      const topN = rows.filter((x) => ids.has(x.id)).length;
      const all = rows.filter((x) => x.features[`uses_${t}`] === 1).length / n;
      if (topN === 0) continue;
      const share = inTop / topN;
      if (Math.abs(share - all) >= 0.25)
        out.push(`${inTop} of the top ${topN} metrics use ${t}, against ${(100 * all).toFixed(0)}% of all evaluated trees.`);
    }
  }

  // How far the short budget can be trusted.
  const fid = r.correlations.fidelity;
  if (fid && Number.isFinite(fid.spearman.r)) {
    const q = fid.spearman.r >= 0.8 ? 'ranks candidates much as the full budget does' : fid.spearman.r >= 0.5 ? 'ranks candidates only roughly as the full budget does' : 'is a poor predictor of the full-budget ranking';
    out.push(`The short budget ${q} (Spearman rho=${f2(fid.spearman.r)}, Kendall tau=${f2(fid.kendall.r)}, n=${fid.spearman.n} candidates run at both).`);
  }

  // The best metric against the baselines on the same settings.
  const best = r.leaderboard.find((b) => b.fullPpl !== null);
  const bases = r.baselines.filter((b) => b.ppl !== null && b.method !== 'dense');
  if (best && bases.length) {
    const beaten = bases.filter((b) => best.fullPpl! < b.ppl!).map((b) => b.method);
    const notBeaten = bases.filter((b) => best.fullPpl! >= b.ppl!).map((b) => `${b.method} ${f2(b.ppl!)}`);
    out.push(
      notBeaten.length === 0
        ? `The best metric found (${best.infix}, perplexity ${f2(best.fullPpl!)} on ${String(r.run.config.fitnessData ?? 'the fitness data')}) beats every baseline run on the same settings (${beaten.join(', ')}).`
        : `The best metric found (${best.infix}, perplexity ${f2(best.fullPpl!)}) beats ${beaten.length ? beaten.join(', ') : 'no baseline'} but not ${notBeaten.join(', ')}.`,
    );
  }
  return out;
}

/** The fitness curve: best and median per step, baselines as reference lines. */
export function reportScene(r: Report): Scene {
  return linePlotScene({
    title: `symprune search, run ${r.run.id}: perplexity of the population`,
    xLabel: 'step',
    yLabel: 'perplexity',
    series: [
      { label: 'best', color: '#1f77b4', points: r.curve.map((c) => ({ x: c.step, y: c.best })) },
      { label: 'median', color: '#ff7f0e', dash: '6 4', points: r.curve.map((c) => ({ x: c.step, y: c.median })), setsRange: false },
    ],
    hlines: r.baselines.filter((b) => b.ppl !== null).map((b) => ({ label: b.method, y: b.ppl! })),
  });
}

/** The Pareto front: best perplexity against tree size, baselines as reference lines. */
export function paretoScene(r: Pick<Report, 'run' | 'pareto' | 'baselines'>): Scene {
  return linePlotScene({
    title: `symprune search, run ${r.run.id}: best perplexity by tree size`,
    xLabel: 'tree size (nodes)',
    yLabel: 'perplexity',
    series: [{ label: 'Pareto front', color: '#2ca02c', points: r.pareto.map((p) => ({ x: p.size, y: p.fitness })) }],
    hlines: r.baselines.filter((b) => b.ppl !== null).map((b) => ({ label: b.method, y: b.ppl! })),
  });
}

export function reportSvg(r: Report): string {
  return sceneSvg(reportScene(r));
}

export function reportPng(r: Report): Buffer {
  return scenePng(reportScene(r));
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const num = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? '-' : f2(v));

/** Plain-text rendering of a report for the terminal. */
export function formatReport(r: Report): string {
  const L: string[] = [];
  const c = r.counts;
  L.push(`run ${r.run.id} in ${r.db}: ${r.run.status}, seed ${r.run.seed}, ${(r.run.seconds / 60).toFixed(1)} min, model ${r.run.modelPath}`);
  L.push(
    `${c.individuals} individuals (${c.invalid} invalid), perplexity runs paid: ${c.paid.short} short + ${c.paid.full} full; not paid: ${c.maskDuplicates} candidates with the masks of an evaluated one, ${c.reused} shared fitnesses${c.settingReuses !== undefined ? `, ${c.settingReuses} perplexities at one setting with the masks of an evaluated one` : ''}; failures: ${c.failed.error} error, ${c.failed.timeout} timeout, ${c.failed.crash} crash`,
  );
  L.push('');
  const over = r.settings ? `, the geometric mean over the settings ${r.settings.labels.join(', ')}` : '';
  L.push(`leaderboard (perplexity on ${String(r.run.config.fitnessData ?? 'the fitness data')} at the full budget${over}; * = estimated from the short budget)`);
  L.push(`${pad('rank', 5)}${pad('ppl', 10)}${pad('short', 10)}${pad('id', 6)}metric`);
  for (const b of r.leaderboard) L.push(`${pad(String(b.rank), 5)}${pad(num(b.fullPpl ?? b.fitness) + (b.fullPpl === null ? '*' : ''), 10)}${pad(num(b.shortPpl), 10)}${pad(String(b.id), 6)}${b.infix}`);
  if (r.baselines.length) {
    L.push('');
    L.push('baselines (same settings)');
    for (const b of r.baselines) L.push(`     ${pad(num(b.ppl), 10)}${pad('', 16)}${b.method}${b.error ? ` (${b.error})` : ''}`);
  }
  if (r.settings) {
    L.push('');
    L.push('baselines at each setting');
    L.push(`${pad('method', 14)}${r.settings.labels.map((l) => pad(l, 18)).join('')}`);
    for (const method of [...new Set(r.settings.baselines.filter((b) => b.method !== 'dense').map((b) => b.method))]) {
      const at = (l: string): BaselineInput | undefined => r.settings!.baselines.find((b) => b.method === method && b.sparsity !== 0 && settingLabelOf(b.sparsity, b.pattern) === l);
      L.push(`${pad(method, 14)}${r.settings.labels.map((l) => pad(num(at(l)?.ppl), 18)).join('')}`);
    }
  }
  if (r.pareto.length) {
    L.push('');
    L.push('Pareto front (best perplexity at each tree size that beats every smaller tree; * = short budget)');
    L.push(`${pad('size', 6)}${pad('ppl', 10)}${pad('id', 6)}metric`);
    for (const p of r.pareto) L.push(`${pad(String(p.size), 6)}${pad(num(p.fitness) + (p.fidelity === 'full' ? '' : '*'), 10)}${pad(String(p.id), 6)}${p.infix}`);
  }
  L.push('');
  L.push('rank correlation with short-budget perplexity (negative: more of it, lower perplexity)');
  L.push(`${pad('feature', 11)}${pad('rho', 8)}${pad('p', 9)}${pad('tau', 8)}${pad('p', 9)}n`);
  for (const f of r.correlations.features) {
    if (!Number.isFinite(f.spearman.r)) continue;
    L.push(`${pad(f.feature, 11)}${pad(f2(f.spearman.r), 8)}${pad(f.spearman.p.toPrecision(2), 9)}${pad(f2(f.kendall.r), 8)}${pad(f.kendall.p.toPrecision(2), 9)}${f.spearman.n}`);
  }
  const fid = r.correlations.fidelity;
  if (fid) L.push(`short vs full budget: rho=${num(fid.spearman.r)} tau=${num(fid.kendall.r)} n=${fid.spearman.n}`);
  L.push('');
  L.push('what the data supports');
  for (const p of r.principles) L.push(`- ${p}`);
  return L.join('\n') + '\n';
}

/** JSON.stringify that writes non-finite numbers as null (JSON has no Infinity). */
export function reportJson(r: Report): string {
  return JSON.stringify(r, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2);
}
