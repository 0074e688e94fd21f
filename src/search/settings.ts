/**
 * The settings of a search run: everything that shapes its results (stored as the run's
 * configuration and compared on --resume), their defaults, and the checks on them.
 * How a run executes (task runner, timeouts, display) is not part of it: a run resumed with
 * other workers continues the same search.
 */
import { InputError } from '../errors.ts';
import { parsePattern, patternName } from '../prune/score.ts';
import { METHOD_NAMES } from '../prune/baselines.ts';
import { resolveConfig, type GpConfig } from '../gp/config.ts';
import { checkAllocation, type Allocation } from '../prune/allocation.ts';
import { stableJson } from '../store/store.ts';
import { settingLabelOf } from '../store/setting.ts';
import { checkAllocationSearch, type AllocationSearch } from './evolve-allocation.ts';

export interface SearchSettings {
  /** sha256 of the model file: the run is keyed on the model's bytes, not on where it lies. */
  modelSha256: string;
  /** The first (and usually the only) setting: its sparsity and pattern. */
  sparsity: number;
  pattern: string;
  /**
   * Two or more settings for a robust fitness (every candidate and baseline evaluated at each,
   * fitness the geometric mean of the perplexities); absent for a run of one setting, whose
   * stored configuration keeps its old shape. The first equals `sparsity`/`pattern`.
   */
  settings?: Setting[];
  mode: 'steady-state' | 'generational';
  population: number;
  /** Children made and evaluated per step (in parallel). Fixed when the run starts (default: twice the number of workers, so workers stay busy while some candidates run their full budget). */
  batch: number;
  /** Steady-state iterations (children, as Pruner-Zero counts them) or generations; exactly one is set. */
  iterations: number | null;
  generations: number | null;
  seed: number;
  /** Fitness data: perplexity of each candidate on these tokens. */
  fitnessData: string;
  /** Full budget in predicted tokens; the short budget is shortFraction of it. */
  evalTokens: number;
  shortFraction: number;
  /** Relative margin over the best short perplexity within which the full budget is paid. */
  margin: number;
  seqlen: number;
  /** Calibration for the one-shot dense statistics X and G. */
  calibData: string;
  nsamples: number;
  /**
   * Absolute path of a statistics file given with --stats (G, and X when it holds X), e.g.
   * gradients computed elsewhere; null: both computed from calibData. Stored so a resumed
   * run reads the same file.
   */
  stats: string | null;
  /** Seed the initial population with magnitude, Wanda, GBLM and Pruner-Zero's metric. */
  seedKnown: boolean;
  /** Baselines evaluated once per run on the same settings. */
  baselines: string[];
  /** GP options beyond the defaults (terminals, operators, depth and size limits, ...); absent: the defaults. */
  gp?: GpOptions;
  /** Layer-wise sparsity of every candidate and baseline (OWL's, or an expression's); absent: uniform. */
  allocation?: Allocation;
  /** Evolve the layer-wise allocation of this fixed metric instead of the metric (evolve-allocation.ts); absent: the metric is evolved. */
  evolveAllocation?: AllocationSearch;
}


/**
 * Defaults, measured on the bundled model with two cores (2 workers, batch 4): a short-budget
 * perplexity (8192 tokens) takes ~1 s, a full one (32768 tokens) ~3.5 s, masks ~0.1 s, the
 * statistics and baselines ~40 s. With a 10% margin a default run took 18.7 min, 357 of
 * 550 candidates at the full budget: once the population converges nearly all of it lies
 * within 10% of the best. Short- and full-budget perplexity ranked candidates alike
 * (Spearman 0.98 over 357), and 152 of the 550 short perplexities were within 2% of the
 * best, so the margin is 2%: about 15 minutes on two cores.
 * 32768 tokens are 38% of brown:search: differences between good metrics are a fraction of
 * a percent of perplexity, and a larger budget makes them less a property of the tokens.
 */
export const SEARCH_DEFAULTS = {
  sparsity: 0.5,
  pattern: 'unstructured',
  mode: 'steady-state' as const,
  population: 50,
  iterations: 500,
  seed: 0,
  fitnessData: 'brown:search',
  evalTokens: 32768,
  shortFraction: 0.25,
  margin: 0.02,
  seqlen: 128,
  calibData: 'brown:calib',
  nsamples: 128,
  stats: null as string | null,
  seedKnown: false,
  baselines: [...METHOD_NAMES] as string[],
};

/** One pruning setting a candidate is evaluated at: N:M patterns prune exactly 50%. */
export interface Setting {
  sparsity: number;
  pattern: string;
}

/** Every setting of a run, in order (one unless `settings` lists more). */
export function runSettings(s: Pick<SearchSettings, 'sparsity' | 'pattern' | 'settings'>): Setting[] {
  return s.settings?.length ? s.settings : [{ sparsity: s.sparsity, pattern: s.pattern }];
}

/** A setting's name, as `--settings` spells it and the evaluations table stores it: `0.7:unstructured`, `2:4`. */
export function settingLabel(x: Setting): string {
  return settingLabelOf(x.sparsity, x.pattern);
}

/** The fields of a run's configuration for a list of settings: one setting keeps the old shape. */
export function settingsFields(list: Setting[]): Pick<SearchSettings, 'sparsity' | 'pattern'> & { settings?: Setting[] } {
  const first = list[0]!;
  return list.length > 1 ? { sparsity: first.sparsity, pattern: first.pattern, settings: list } : { sparsity: first.sparsity, pattern: first.pattern };
}

const NM_RE = /^\s*\d+\s*:\s*\d+\s*$/;

/**
 * `--settings`: comma-separated settings, each `SPARSITY` (unstructured), `SPARSITY:PATTERN`
 * or `N:M` (an N:M pattern at its own 50%). Values are checked by checkSettings.
 */
export function parseSettingsList(text: string, flag = 'settings'): Setting[] {
  const items = splitList(text, flag);
  return items.map((item) => {
    if (NM_RE.test(item)) return { sparsity: 0.5, pattern: item.replace(/\s/g, '') };
    const at = item.indexOf(':');
    const num = at < 0 ? item : item.slice(0, at);
    const pattern = at < 0 ? 'unstructured' : item.slice(at + 1).trim();
    const sparsity = Number(num.trim());
    if (num.trim() === '' || !Number.isFinite(sparsity)) throw new InputError(`${flag} ${text}: ${item} is not SPARSITY, SPARSITY:PATTERN or N:M`);
    return { sparsity, pattern };
  });
}

/**
 * The settings of `--sparsity` × `--pattern` (comma-separated lists): every sparsity with every
 * unstructured pattern, and each N:M pattern once at its own 50% (it takes no sparsity).
 * A sparsity that no pattern takes is refused (N:M alone needs 0.5, as for one setting).
 */
export function crossSettings(sparsities: number[], patterns: string[], names: Pick<SettingNames, 'sparsity' | 'pattern'> = FIELD_NAMES): Setting[] {
  const twice = <T>(xs: T[], key: (x: T) => string): T | undefined => xs.find((x, i) => xs.findIndex((y) => key(y) === key(x)) !== i);
  const sp = twice(sparsities, String);
  if (sp !== undefined) throw new InputError(`${names.sparsity} ${sparsities.join(',')}: ${sp} given twice`);
  const pt = twice(patterns, (p) => p.trim().toLowerCase().replace(/\s/g, ''));
  if (pt !== undefined) throw new InputError(`${names.pattern} ${patterns.join(',')}: ${pt} given twice`);
  const unstructured = patterns.filter((p) => !NM_RE.test(p));
  const nm = patterns.filter((p) => NM_RE.test(p));
  if (unstructured.length === 0) {
    const other = sparsities.find((x) => x !== 0.5);
    if (other !== undefined) throw new InputError(`${names.sparsity} ${other}: pattern ${nm[0]} prunes exactly 50% and no unstructured pattern takes ${other}; use ${names.sparsity} 0.5 or add unstructured to ${names.pattern}`);
  }
  return [...unstructured.flatMap((p) => sparsities.map((x) => ({ sparsity: x, pattern: p }))), ...nm.map((p) => ({ sparsity: 0.5, pattern: p }))];
}

/** Items of a comma-separated list, trimmed; an empty item is refused. */
export function splitList(text: string, flag: string): string[] {
  const items = text.split(',').map((x) => x.trim());
  if (items.some((x) => x === '')) throw new InputError(`${flag} ${text}: empty item in the comma-separated list`);
  return items;
}

/** GP options beyond the settings above; stored with the run (they shape its results). */
export type GpOptions = Partial<Pick<GpConfig, 'terminals' | 'unaryOps' | 'binaryOps' | 'initDepth' | 'maxDepth' | 'maxSize' | 'sampleSize' | 'topK' | 'crossoverProb' | 'mutationProb' | 'seeds' | 'language'>>;

/**
 * How errors name each setting and the run-level options. The library names them by their
 * field (`sparsity`, `evalTokens`); a front end passes its own words (the CLI its flags).
 */
export type SettingNames = Record<keyof SearchSettings | 'resume' | 'db' | 'workers' | 'taskTimeout', string>;

export const FIELD_NAMES: SettingNames = {
  ...(Object.fromEntries(
    (['modelSha256', 'sparsity', 'pattern', 'settings', 'mode', 'population', 'batch', 'iterations', 'generations', 'seed', 'fitnessData', 'evalTokens', 'shortFraction', 'margin', 'seqlen', 'calibData', 'nsamples', 'stats', 'seedKnown', 'baselines', 'gp', 'allocation', 'evolveAllocation'] as const).map((k) => [k, k]),
  ) as Record<keyof SearchSettings, string>),
  resume: 'resume',
  db: 'db',
  workers: 'workers',
  taskTimeout: 'taskTimeout',
};

/**
 * The one place search settings are checked (a new run's, before anything is created).
 * Bad values are an InputError naming the setting in the caller's words.
 */
export function checkSettings(s: SearchSettings, names: SettingNames = FIELD_NAMES): void {
  const n = names;
  const posInt = (v: number | null, key: keyof SearchSettings, min = 1): void => {
    if (v !== null && !(Number.isInteger(v) && v >= min)) throw new InputError(`${n[key]} ${v}: must be an integer of at least ${min}`);
  };
  checkSettingList(s, n);
  posInt(s.population, 'population', 2);
  posInt(s.batch, 'batch');
  posInt(s.iterations, 'iterations', 0);
  posInt(s.generations, 'generations', 0);
  if ((s.iterations === null) === (s.generations === null)) throw new InputError(`give either ${n.iterations} (steady-state) or ${n.generations} (generational), not both`);
  if (!Number.isInteger(s.seed)) throw new InputError(`${n.seed} ${s.seed}: must be an integer`);
  posInt(s.evalTokens, 'evalTokens', 2);
  posInt(s.seqlen, 'seqlen', 2);
  posInt(s.nsamples, 'nsamples');
  if (!(s.shortFraction > 0 && s.shortFraction <= 1)) throw new InputError(`${n.shortFraction} ${s.shortFraction}: must be in (0, 1]`);
  if (!(s.margin >= 0 && Number.isFinite(s.margin))) throw new InputError(`${n.margin} ${s.margin}: must be a non-negative number`);
  for (const b of s.baselines) if (!(METHOD_NAMES as readonly string[]).includes(b)) throw new InputError(`${n.baselines}: unknown method ${b}; expected some of ${METHOD_NAMES.join(', ')} or none`);
  if (s.allocation && s.allocation.kind !== 'uniform') {
    checkAllocation(s.allocation);
    const nm = runSettings(s).find((x) => parsePattern(x.pattern, x.sparsity).kind !== 'unstructured');
    if (nm) throw new InputError(`${n.allocation} ${s.allocation.kind}: needs unstructured sparsity (N:M fixes every block at 50%; setting ${nm.pattern})`);
  }
  if (s.evolveAllocation) checkAllocationSearch(s.evolveAllocation, s, n);
  if ((s.gp?.language === 'allocation') !== !!s.evolveAllocation) throw new InputError(`${n.gp}: the allocation language goes with ${n.evolveAllocation} (and only with it)`);
  if (s.gp) resolveConfig({ ...s.gp, populationSize: s.population, mode: s.mode, batchSize: s.batch, seedKnown: s.seedKnown });
}

/** Each setting valid (sparsity in (0, 1), a known pattern, 50% for N:M) and none twice. */
function checkSettingList(s: SearchSettings, n: SettingNames): void {
  if (!s.settings?.length) {
    if (!(Number.isFinite(s.sparsity) && s.sparsity > 0 && s.sparsity < 1)) throw new InputError(`${n.sparsity} ${s.sparsity}: must be a number strictly between 0 and 1`);
    parsePattern(s.pattern, s.sparsity);
    return;
  }
  const first = s.settings[0]!;
  if (s.settings.length < 2 || first.sparsity !== s.sparsity || first.pattern !== s.pattern) throw new Error('checkSettings: `settings` lists two or more settings, the first equal to sparsity/pattern');
  const seen = new Set<string>();
  for (const x of s.settings) {
    const where = `${n.settings}: setting ${x.sparsity}:${x.pattern}`;
    if (!(Number.isFinite(x.sparsity) && x.sparsity > 0 && x.sparsity < 1)) throw new InputError(`${where}: sparsity must be a number strictly between 0 and 1`);
    let pattern: string;
    try {
      pattern = patternName(parsePattern(x.pattern, x.sparsity));
    } catch (e) {
      throw new InputError(`${where}: ${(e as Error).message}`);
    }
    const label = settingLabelOf(x.sparsity, pattern);
    if (seen.has(label)) throw new InputError(`${n.settings}: setting ${label} given twice`);
    seen.add(label);
  }
}

/** Short budget in predicted tokens: a prefix of the full budget's windows, at least one window. */
export function shortTokens(s: Pick<SearchSettings, 'evalTokens' | 'shortFraction' | 'seqlen'>): number {
  return Math.min(s.evalTokens, Math.max(s.seqlen, Math.round(s.evalTokens * s.shortFraction)));
}

/** The settings that differ between a stored configuration and a requested one, as phrases in the caller's words. */
export function settingDiffs(stored: Record<string, unknown>, requested: Partial<Record<keyof SearchSettings, unknown>>, names: SettingNames = FIELD_NAMES): string[] {
  const out: string[] = [];
  for (const k of Object.keys(requested) as (keyof SearchSettings)[]) {
    if (!(k in requested) || requested[k] === undefined) continue;
    // Key order aside: the stored configuration comes back with sorted keys.
    const a = stableJson(stored[k] ?? null);
    const b = stableJson(requested[k] ?? null);
    // `settings` is absent from a run of one setting, and null in a request for one.
    const show = (v: unknown): string => (k === 'settings' && (v === null || v === undefined) ? 'one setting' : fmt(v));
    if (a !== b) out.push(`${names[k] ?? k} ${show(requested[k])} (the run has ${show(stored[k])})`);
  }
  return out;
}

function fmt(v: unknown): string {
  if (Array.isArray(v)) return v.length ? v.map((x) => (x && typeof x === 'object' && 'pattern' in x ? settingLabel(x as Setting) : String(x))).join(',') : 'none';
  if (v !== null && typeof v === 'object') return stableJson(v); // an allocation, an allocation search
  return v === null || v === undefined ? 'unset' : String(v);
}
