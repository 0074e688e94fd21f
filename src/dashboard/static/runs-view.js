// The runs of every database: which are alive, how fast they go, how good they got.
import { card, fmt, getJson, h, link, metric, route, status, table } from './dom.js';

export function settings(c) {
  const pills = [
    c.pattern,
    c.sparsity !== undefined ? `sparsity ${c.sparsity}` : null,
    c.mode === 'generational' ? `${c.generations} generations` : c.iterations !== undefined ? `${c.iterations} iterations` : null,
    c.population !== undefined ? `population ${c.population}` : null,
    c.evalTokens !== undefined ? `${fmt.num(c.evalTokens)} tokens` : null,
    c.seed !== undefined ? `seed ${c.seed}` : null,
  ];
  return pills.filter((p) => p !== null && p !== undefined).map((p) => h('span', { class: 'pill' }, String(p)));
}

export function modelCell(s) {
  const name = String(s.modelPath).split('/').slice(-2).join('/');
  return h('span', { title: `${s.modelPath}\nsha256 ${s.modelSha256}` }, name, h('br'), h('code', { class: 'muted' }, fmt.short(s.modelSha256)));
}

export function progressCell(s) {
  if (!s.totalSteps || s.step === null) return s.step === null ? '–' : `step ${s.step}`;
  const f = Math.min(1, s.step / s.totalSteps);
  return h('div', { title: `step ${s.step} of ${s.totalSteps}` }, `${Math.round(100 * f)}%`, h('div', { class: 'bar' }, h('span', { style: `width:${(100 * f).toFixed(1)}%` })));
}

/** Best fitness, and how it compares with the best baseline of the same run. */
export function bestVsBaseline(s) {
  if (!s.best) return '–';
  const v = s.best.fullPpl ?? s.best.fitness;
  const b = s.bestBaseline;
  const d = b ? (100 * (v - b.ppl)) / b.ppl : null;
  return h('span', null, h('b', null, fmt.ppl(v)), b ? h('div', { class: d <= 0 ? 'good' : 'bad', title: `best baseline: ${b.method} ${fmt.ppl(b.ppl)}` }, `${d <= 0 ? '' : '+'}${d.toFixed(2)}% vs ${b.method}`) : null);
}

const failed = (c) => c.failed.error + c.failed.timeout + c.failed.crash;

export function runsView() {
  const selected = new Set();
  const compareBtn = h('button', { class: 'primary', disabled: true, onclick: () => (location.hash = route(['compare', [...selected].join(',')])) }, 'Compare selected runs');
  const cards = h('div', { class: 'cards' });
  const runsBox = h('div');
  const el = h(
    'div',
    { class: 'stack' },
    h('h1', null, 'Runs'),
    cards,
    h('section', { class: 'panel' }, h('div', { class: 'toolbar' }, h('h2', { style: 'margin:0;flex:1' }, 'Search runs', h('span', { class: 'hint' }, 'tick two or more to lay them side by side')), compareBtn), runsBox),
  );
  const sync = () => (compareBtn.disabled = selected.size < 2);

  async function refresh() {
    const dbs = await getJson('/api/overview');
    const rows = dbs.flatMap((d) => d.runs.map((s) => ({ ...s, db: d.db, label: d.label, path: d.path, key: `${d.db}:${s.run}` })));
    const running = rows.filter((r) => r.status === 'running').length;
    const paid = rows.reduce((a, r) => a + r.counts.paid.short + r.counts.paid.full, 0);
    cards.replaceChildren(
      card('databases', String(dbs.length), dbs.map((d) => d.label).join(', ')),
      card('runs', String(rows.length), `${running} running`),
      card('perplexity evaluations', fmt.num(paid), 'paid, over all runs'),
      card('failed evaluations', fmt.num(rows.reduce((a, r) => a + failed(r.counts), 0)), 'error, timeout or crash'),
    );
    runsBox.replaceChildren(
      table(
        [
          { key: 'pick', label: '', value: (r) => (selected.has(r.key) ? 0 : 1), cell: (r) => h('input', { type: 'checkbox', 'aria-label': `select ${r.key}`, checked: selected.has(r.key) ? '' : null, onchange: (e) => { e.target.checked ? selected.add(r.key) : selected.delete(r.key); sync(); } }) },
          { key: 'label', label: 'database', cell: (r) => h('span', { title: r.path }, r.label) },
          { key: 'run', label: 'run', num: true, cell: (r) => link(['run', r.db, r.run], `run ${r.run}`) },
          { key: 'status', label: 'status', cell: status },
          { key: 'modelPath', label: 'model', cell: modelCell },
          { key: 'settings', label: 'settings', value: (r) => JSON.stringify(r.config), cell: (r) => h('div', null, settings(r.config)) },
          { key: 'progress', label: 'progress', value: (r) => (r.totalSteps ? r.step / r.totalSteps : null), cell: progressCell },
          { key: 'seconds', label: 'elapsed', num: true, cell: (r) => h('span', { title: `last write ${r.lastWrite}` }, fmt.duration(r.seconds), h('div', { class: 'muted' }, fmt.ago(r.lastWrite))) },
          { key: 'rate', label: 'evals/min', num: true, value: (r) => r.perMinute, title: 'paid perplexity evaluations per minute: whole run (last 100)', cell: (r) => h('span', null, fmt.num(r.perMinute, 1), h('div', { class: 'muted' }, `(${fmt.num(r.recentPerMinute, 1)})`)) },
          { key: 'evals', label: 'evaluations', num: true, value: (r) => r.counts.paid.short + r.counts.paid.full, cell: (r) => h('span', { title: `${r.counts.paid.short} short + ${r.counts.paid.full} full; ${r.counts.individuals} individuals` }, fmt.num(r.counts.paid.short + r.counts.paid.full), h('div', { class: 'muted' }, `${r.counts.individuals} trees`)) },
          { key: 'workers', label: 'workers', num: true, value: (r) => r.workers?.total ?? null, title: 'job queue workers the run heard from (busy · idle · gone); – for local threads', cell: workersCell },
          { key: 'failures', label: 'failures', num: true, value: (r) => failed(r.counts), cell: (r) => h('span', { class: failed(r.counts) ? 'bad' : null, title: `${r.counts.failed.error} error, ${r.counts.failed.timeout} timeout, ${r.counts.failed.crash} crash; ${r.counts.invalid} invalid trees` }, String(failed(r.counts))) },
          { key: 'best', label: 'best ppl', num: true, value: (r) => (r.best ? r.best.fullPpl ?? r.best.fitness : null), cell: bestVsBaseline },
          { key: 'metric', label: 'best metric', value: (r) => r.best?.infix ?? null, cell: (r) => (r.best ? metric(r.best.infix, r.best.latex) : '–') },
        ],
        rows,
        { id: 'runs', empty: 'These databases hold no run yet.', onRow: (r) => (location.hash = route(['run', r.db, r.run])) },
      ),
    );
    sync();
  }
  return { el, dbs: null, crumbs: [], refresh };
}

/** How many job queue workers a run heard from, and how many of them are working now. */
function workersCell(r) {
  const w = r.workers;
  if (!w) return '–';
  return h('span', { title: `${w.busy} busy, ${w.idle} idle, ${w.gone} gone` }, String(w.total), h('div', { class: 'muted' }, w.busy + w.idle ? `${w.busy} busy · ${w.idle} idle` : 'all gone'));
}
