/**
 * The held-out tables from the JSON files runs/evidence/run.sh writes:
 *   node --import tsx runs/evidence/table.ts > runs/evidence/README.md
 * Per model: brown:test perplexity of every row at every setting run, then the zero-shot
 * accuracies (percent, ± lm-eval's standard error) per setting.
 */
import fs from 'node:fs';
import path from 'node:path';

interface Task { acc: number; acc_stderr: number; acc_norm: number; acc_norm_stderr: number; n: number; ppl?: number }
interface Row { method: string; ppl: number; sparsity: number; tasks?: Record<string, Task> }
interface Result { model: string; sparsity: number; pattern: string; calibration: { mode: string; nsamples: number; seqlen: number; data: string }; eval: { tokens: number }; dense: { ppl: number; tasks?: Record<string, Task> }; methods: Row[]; metric: string | null; seconds: number }

const DIR = path.dirname(new URL(import.meta.url).pathname);
const SETTINGS = [['u50', '50%'], ['u60', '60%'], ['u70', '70%'], ['2-4', '2:4'], ['4-8', '4:8']] as const;
// Rows in one order everywhere: each method beside its layer-wise (+owl, +alloc) variant.
const ORDER = ['magnitude', 'wanda', 'gblm', 'ria', 'pruner-zero', 'sparsegpt', 'metric', 'robust metric'];
const rank = (m: string) => {
  const base = m.replace(/\+(owl|alloc)$/, '');
  return (ORDER.includes(base) ? ORDER.indexOf(base) : ORDER.length) * 2 + (m === base ? 0 : 1);
};
const byRank = (a: { method: string }, b: { method: string }) => rank(a.method) - rank(b.method);
const pct = (t: Task | undefined, norm = false) => (t ? `${(100 * (norm ? t.acc_norm : t.acc)).toFixed(1)} ± ${(100 * (norm ? t.acc_norm_stderr : t.acc_stderr)).toFixed(1)}` : '');

const out: string[] = ['# Held-out evidence on brown:test', '', 'Made by `runs/evidence/run.sh MODEL_DIR NAME` (one `symprune baselines --json` per setting; commands in `NAME.log`) and this file by `node --import tsx runs/evidence/table.ts > runs/evidence/README.md`. `metric` is the reference run\'s best metric (`runs/reference/best.json`, searched at 50% unstructured); `robust metric` the robust reference run\'s (`runs/reference-robust/best.json`, searched at 50% and 70% unstructured and 2:4 at once) and `robust metric+alloc` that metric with the layer-wise allocation searched for it (`runs/reference-robust/alloc.json`, commands with `ROBUST=1` in the log); `+owl` rows use OWL\'s layer-wise sparsity (M = 5, λ = 0.08). Zero-shot: percent, ± the standard error as lm-eval reports it.', ''];
for (const name of fs.readdirSync(DIR).filter((d) => fs.statSync(path.join(DIR, d)).isDirectory()).sort()) {
  const differs: string[] = [];
  const runs = SETTINGS.map(([f, label]) => {
    const read = (file: string) => (fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Result) : null);
    const main = read(path.join(DIR, name, `${f}.json`));
    // The robust reference run's metric (and its searched allocation), measured apart (run.sh with ROBUST=1).
    const robust = read(path.join(DIR, name, `${f}-robust.json`));
    if (!main && !robust) return null;
    const r = main ?? { ...robust!, methods: [], metric: null };
    if (robust) r.methods.push(...robust.methods.map((m) => ({ ...m, method: `robust ${m.method}` })));
    // Rows run later beside the setting's first file (same flags but --methods): SETTING-MORE.json.
    if (main) for (const more of fs.readdirSync(path.join(DIR, name)).filter((x) => x.startsWith(`${f}-`) && x.endsWith('.json') && x !== `${f}-robust.json`).sort()) r.methods.push(...read(path.join(DIR, name, more))!.methods);
    const [a, b] = [main?.calibration.nsamples, robust?.calibration.nsamples];
    if (a !== undefined && b !== undefined && a !== b) differs.push(`${label}: the rows other than \`robust\` were calibrated on ${a} windows, the \`robust\` rows on ${b}.`);
    return { label, r };
  }).filter((x): x is { label: (typeof SETTINGS)[number][1]; r: Result } => x !== null);
  if (runs.length === 0) continue;
  const first = runs[0]!.r;
  out.push(`## ${name}`, '', `Model \`${first.model.replace(/^.*?\/(models\/)/, '$1')}\`; ${first.calibration.mode} calibration on ${first.calibration.nsamples} × ${first.calibration.seqlen} tokens of ${first.calibration.data}; perplexity on ${first.eval.tokens} predicted tokens of brown:test. Settings not listed were not run. ${first.metric ? `metric = \`${first.metric}\`.` : ''}`, '');
  const methods = [...new Set(runs.flatMap((x) => x.r.methods.map((m) => m.method)))].sort((a, b) => rank(a) - rank(b));
  out.push(`| perplexity | ${runs.map((x) => x.label).join(' | ')} |`, `| --- |${runs.map(() => ' ---: |').join('')}`);
  out.push(`| dense | ${runs.map((x) => x.r.dense.ppl.toFixed(2)).join(' | ')} |`);
  for (const m of methods) {
    const cells = runs.map((x) => x.r.methods.find((r) => r.method === m));
    // A column with only the robust rows has nothing to beat: no bold there.
    const maskOnly = (x: (typeof runs)[number]) => x.r.methods.filter((r) => r.method !== 'sparsegpt' && r.method !== 'sparsegpt+owl');
    const best = runs.map((x) => (maskOnly(x).some((r) => !r.method.startsWith('robust ')) ? Math.min(...maskOnly(x).map((r) => r.ppl)) : NaN));
    out.push(`| ${m} | ${cells.map((c, i) => (c ? (c.ppl === best[i] ? `**${c.ppl.toFixed(2)}**` : c.ppl.toFixed(2)) : '')).join(' | ')} |`);
  }
  out.push('', 'Bold: lowest perplexity among the mask-only rows (all but SparseGPT, which also updates weights), where other methods were run beside the robust rows.', ...differs.flatMap((d) => ['', `Calibration differs at ${d}`]), '');
  for (const { label, r } of runs) {
    const tasks = Object.keys(r.dense.tasks ?? {});
    if (tasks.length === 0) continue;
    out.push(`### ${name}, ${label}: zero-shot`, '', `| method | ${tasks.map((t) => `${t} acc | ${t} acc_norm`).join(' | ')} |`, `| --- |${tasks.map(() => ' ---: | ---: |').join('')}`);
    for (const row of [{ method: 'dense', tasks: r.dense.tasks }, ...[...r.methods].sort(byRank)]) out.push(`| ${row.method} | ${tasks.map((t) => `${pct(row.tasks?.[t])} | ${pct(row.tasks?.[t], true)}`).join(' | ')} |`);
    out.push('');
  }
}
process.stdout.write(out.join('\n'));
