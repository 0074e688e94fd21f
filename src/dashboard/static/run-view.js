// One run: how the search is going, what it found, and what the data says about why.
import { curveChart, fidelityChart, featureChart, paretoChart } from './charts.js';
import { card, fmt, getJson, h, link, metric, panel, route, status, table } from './dom.js';
import { bestVsBaseline, modelCell, settings } from './runs-view.js';

export function runView(db, run) {
  const go = (id) => (location.hash = route(['run', db, run, 'c', id]));
  const title = h('h1');
  const cards = h('div', { class: 'cards' });
  const config = h('div');
  const canvas = (cls) => h('div', { class: 'chart' + (cls ? ' ' + cls : '') }, h('canvas'));
  const curveBox = canvas('tall');
  const curveNote = h('div', { class: 'chart-note' });
  const paretoBox = canvas();
  const featureBox = canvas();
  const fidelityBox = canvas();
  const board = h('div');
  const corr = h('div');
  const principles = h('ul', { class: 'principles' });
  const front = h('div');
  const recent = h('div');
  const fails = h('div');
  const load = h('div');
  const workers = h('div');
  const workersPanel = h('section', { class: 'panel wide', hidden: '' }, h('h2', null, 'Workers', h('span', { class: 'hint' }, 'the job queue’s workers this run heard from; gone: disconnected, or the run stopped')), workers);
  const fidelityNote = h('span', { class: 'hint' });
  let feature = 'size';
  let features = [];
  const pick = h('select', { 'aria-label': 'feature', onchange: () => { feature = pick.value; drawFeature(); } });

  const el = h(
    'div',
    null,
    title,
    cards,
    h('div', { class: 'grid' },
      panel('Best and median fitness', 'over paid evaluations; dotted lines: baselines on the same settings', curveBox, curveNote),
      panel('Leaderboard beside the baselines', 'perplexity on the fitness data, full budget (* estimated from the short budget)', board),
      panel('Pareto front: perplexity against tree size', 'click a point for its candidate page', paretoBox, front),
      panel('Rank correlation with short-budget perplexity', 'negative: more of it, lower perplexity; click a row to plot it', corr, principles),
      h('section', { class: 'panel' }, h('div', { class: 'toolbar' }, h('h2', { style: 'margin:0;flex:1' }, 'Feature against perplexity'), pick), featureBox),
      h('section', { class: 'panel' }, h('h2', null, 'Short against full budget', fidelityNote), fidelityBox),
      panel('Newest individuals', 'what the search is doing now', recent),
      panel('Failures', 'failed evaluations and why trees were unusable', fails),
      workersPanel,
      h('section', { class: 'panel wide' }, h('h2', null, 'Evaluations per worker'), load),
      h('section', { class: 'panel wide' }, h('h2', null, 'Settings and provenance'), config),
    ),
  );
  const charts = {
    curve: curveChart(curveBox.firstChild),
    pareto: paretoChart(paretoBox.firstChild, go),
    feature: featureChart(featureBox.firstChild, go),
    fidelity: fidelityChart(fidelityBox.firstChild, go),
  };

  async function drawFeature() {
    const r = await getJson(`/api/scatter?db=${db}&run=${run}&feature=${encodeURIComponent(feature)}`);
    charts.feature.update(r.feature, r.points);
  }

  async function refresh() {
    const r = await getJson(`/api/run?db=${db}&run=${run}`);
    const s = r.summary;
    const c = s.counts;
    title.replaceChildren(`${r.label} · run ${s.run}`, status(s));
    const eta = s.status === 'running' && s.totalSteps && s.step ? ((s.totalSteps - s.step) * s.seconds) / s.step : null;
    cards.replaceChildren(
      card('best fitness', bestVsBaseline(s), s.best ? `individual #${s.best.id}` : null),
      card('evaluations paid', fmt.num(c.paid.short + c.paid.full), `${c.paid.short} short + ${c.paid.full} full · ${c.individuals} trees`),
      card('evaluations / min', fmt.num(s.recentPerMinute ?? s.perMinute, 1), `last 100; whole run ${fmt.num(s.perMinute, 1)}`),
      card('elapsed', fmt.duration(s.seconds), eta !== null ? `about ${fmt.duration(eta)} to go` : `last write ${fmt.ago(s.lastWrite)}`),
      card('saved', fmt.num(c.maskDuplicates + c.reused), `${c.maskDuplicates} equal masks, ${c.reused} shared fitnesses`),
      card('failures', fmt.num(c.failed.error + c.failed.timeout + c.failed.crash), `${c.failed.error} error · ${c.failed.timeout} timeout · ${c.failed.crash} crash · ${c.invalid} invalid`, c.failed.error + c.failed.timeout + c.failed.crash ? 'bad' : null),
    );
    curveNote.textContent = charts.curve.update(r.curve, r.baselines.filter((b) => b.split === String(s.config.fitnessData ?? b.split)));
    drawBoard(r, s);
    charts.pareto.update(r.pareto);
    front.replaceChildren(
      table(
        [
          { key: 'size', label: 'size', num: true },
          { key: 'fitness', label: 'ppl', num: true },
          { key: 'id', label: 'id', num: true, cell: (p) => link(['run', db, run, 'c', p.id], `#${p.id}`) },
          { key: 'infix', label: 'metric', cell: (p) => h('code', null, p.infix) },
        ],
        r.pareto.front,
        { id: 'pareto', short: true, onRow: (p) => go(p.id), empty: 'no evaluated individual yet' },
      ),
    );
    drawCorrelations(r);
    features = r.features;
    if (pick.options.length !== features.length) pick.replaceChildren(...features.map((f) => h('option', { value: f, selected: f === feature ? '' : null }, f)));
    await drawFeature();
    const fid = r.analysis?.correlations.fidelity;
    fidelityNote.textContent = fid ? `Spearman ρ ${fmt.r(fid.spearman.r)}, Kendall τ ${fmt.r(fid.kendall.r)}, n = ${fid.spearman.n}` : `${r.fidelity.length} candidates run at both budgets`;
    charts.fidelity.update(r.fidelity);
    recent.replaceChildren(
      table(
        [
          { key: 'id', label: 'id', num: true, cell: (i) => link(['run', db, run, 'c', i.id], `#${i.id}`) },
          { key: 'step', label: 'step', num: true },
          { key: 'origin', label: 'origin' },
          { key: 'fitness', label: 'ppl', num: true, cell: (i) => (i.invalid ? h('span', { class: 'bad', title: i.invalid }, 'invalid') : i.fitness === null ? 'pending' : fmt.ppl(i.fitness) + (i.fidelity === 'short' ? '*' : '')) },
          { key: 'infix', label: 'metric', cell: (i) => h('code', null, i.infix) },
        ],
        r.recent,
        { id: 'recent', short: true, onRow: (i) => go(i.id) },
      ),
    );
    fails.replaceChildren(
      table(
        [
          { key: 'individual', label: 'individual', num: true, cell: (e) => link(['run', db, run, 'c', e.individual], `#${e.individual}`) },
          { key: 'fidelity', label: 'budget' },
          { key: 'status', label: 'status', cell: (e) => h('span', { class: 'bad' }, String(e.status)) },
          { key: 'worker', label: 'worker', num: true },
          { key: 'error', label: 'error', cell: (e) => h('code', null, e.error ?? '') },
        ],
        r.failures.evaluations,
        { id: 'failed-evals', short: true, empty: 'no failed evaluation' },
      ),
      h('h2', { style: 'margin-top:14px' }, 'Unusable trees'),
      table(
        [
          { key: 'n', label: 'trees', num: true },
          { key: 'reason', label: 'reason', cell: (x) => h('code', null, x.reason) },
          { key: 'example', label: 'e.g.', num: true, cell: (x) => link(['run', db, run, 'c', x.example], `#${x.example}`) },
        ],
        r.failures.invalid,
        { id: 'invalid', short: true, empty: 'none' },
      ),
    );
    load.replaceChildren(
      table(
        [
          { key: 'worker', label: 'worker', num: true },
          { key: 'evaluations', label: 'evaluations', num: true },
          { key: 'short', label: 'short', num: true },
          { key: 'full', label: 'full', num: true },
          { key: 'failed', label: 'failed', num: true },
          { key: 'short_mean', label: 'mean short (s)', num: true, cell: (w) => fmt.num(w.short_mean, 3) },
          { key: 'full_mean', label: 'mean full (s)', num: true, cell: (w) => fmt.num(w.full_mean, 3) },
          { key: 'seconds', label: 'busy', num: true, cell: (w) => fmt.duration(w.seconds) },
        ],
        r.workerLoad,
        { id: 'load', short: true },
      ),
    );
    drawWorkers(r.workers);
    config.replaceChildren(
      h('div', null, settings(s.config)),
      h('dl', { class: 'kv' },
        h('dt', null, 'model'), h('dd', null, modelCell(s)),
        h('dt', null, 'created'), h('dd', null, s.created),
        h('dt', null, 'last write'), h('dd', null, `${s.lastWrite} (${fmt.ago(s.lastWrite)})`),
        s.error ? [h('dt', null, 'error'), h('dd', { class: 'bad' }, s.error)] : null,
        Object.entries(s.versions).map(([k, v]) => [h('dt', null, k), h('dd', null, String(v))]),
        Object.entries(s.config).map(([k, v]) => [h('dt', null, k), h('dd', null, h('code', null, JSON.stringify(v)))]),
      ),
    );
  }

  function drawBoard(r, s) {
    const fitnessData = String(s.config.fitnessData ?? '');
    const rows = [
      ...r.leaderboard.map((b) => ({ ...b, kind: 'metric', ppl: b.fullPpl ?? b.fitness, estimated: b.fullPpl === null })),
      ...r.baselines.filter((b) => b.ppl !== null && (!fitnessData || b.split === fitnessData)).map((b) => ({ kind: 'baseline', method: b.method, ppl: b.ppl, id: null, infix: b.method })),
    ];
    board.replaceChildren(
      table(
        [
          { key: 'rank', label: 'rank', num: true, cell: (x) => (x.kind === 'metric' ? String(x.rank) : '') },
          { key: 'ppl', label: 'ppl', num: true, cell: (x) => h('b', null, fmt.ppl(x.ppl) + (x.estimated ? '*' : '')) },
          { key: 'shortPpl', label: 'short', num: true, cell: (x) => fmt.ppl(x.shortPpl) },
          { key: 'size', label: 'size', num: true, cell: (x) => (x.size ?? '') },
          { key: 'id', label: 'id', num: true, cell: (x) => (x.kind === 'metric' ? link(['run', db, run, 'c', x.id], `#${x.id}`) : '') },
          { key: 'infix', label: 'metric', cell: (x) => (x.kind === 'metric' ? metric(x.infix, x.latex) : h('span', null, h('b', null, x.method), ' (baseline)')) },
        ],
        rows,
        { id: 'leaderboard', initial: { key: 'ppl', dir: 1 }, rowClass: (x) => (x.kind === 'baseline' ? 'baseline' : x.rank === 1 ? 'best' : ''), onRow: (x) => x.kind === 'metric' && go(x.id) },
      ),
    );
  }

  function drawWorkers(rows) {
    workersPanel.hidden = rows.length === 0;
    workers.replaceChildren(
      table(
        [
          { key: 'worker', label: 'worker', cell: (w) => h('code', null, w.worker) },
          { key: 'host', label: 'host' },
          { key: 'device', label: 'device', value: (w) => `${w.device ?? ''} ${w.threads ?? ''}`, cell: (w) => (w.device ? `${w.device}${w.threads ? ` · ${w.threads} thread${w.threads === 1 ? '' : 's'}` : ''}` : '–') },
          { key: 'state', label: 'state', value: (w) => ['busy', 'idle', 'gone'].indexOf(w.state), cell: (w) => h('span', { class: `badge worker-${['busy', 'idle', 'gone'].includes(w.state) ? w.state : 'gone'}` }, w.state) },
          { key: 'jobsDone', label: 'jobs done', num: true },
          { key: 'jobsFailed', label: 'failed', num: true, cell: (w) => h('span', { class: w.jobsFailed ? 'bad' : null }, String(w.jobsFailed)) },
          { key: 'evaluations', label: 'evaluations', num: true, title: 'perplexity evaluations among its jobs' },
          { key: 'perMinute', label: 'evals/min', num: true, title: 'perplexity evaluations per minute between its first and last sighting', cell: (w) => fmt.num(w.perMinute, 1) },
          { key: 'seconds', label: 'busy', num: true, title: 'time spent on this run’s jobs', cell: (w) => fmt.duration(w.seconds) },
          { key: 'lastSeen', label: 'last seen', value: (w) => w.lastSeen, cell: (w) => h('span', { title: `${w.lastSeen} (first seen ${w.firstSeen})` }, fmt.ago(w.lastSeen)) },
        ],
        rows,
        { id: 'workers', initial: { key: 'state', dir: 1 } },
      ),
    );
  }

  function drawCorrelations(r) {
    if (!r.analysis) {
      corr.replaceChildren(h('div', { class: r.analysisError ? 'error-box' : 'empty' }, r.analysisError ? `The analysis failed: ${r.analysisError}` : 'Computing the correlation analysis…'));
      principles.replaceChildren();
      return;
    }
    const rows = r.analysis.correlations.features.map((f) => ({ feature: f.feature, rho: f.spearman.r, rp: f.spearman.p, tau: f.kendall.r, tp: f.kendall.p, n: f.spearman.n }));
    corr.replaceChildren(
      table(
        [
          { key: 'feature', label: 'feature', cell: (x) => h('code', null, x.feature) },
          { key: 'rho', label: 'Spearman ρ', num: true, cell: (x) => h('span', { class: x.rp < 0.01 ? (x.rho < 0 ? 'good' : 'bad') : null }, fmt.r(x.rho)) },
          { key: 'rp', label: 'p', num: true, cell: (x) => fmt.p(x.rp) },
          { key: 'tau', label: 'Kendall τ', num: true, cell: (x) => fmt.r(x.tau) },
          { key: 'tp', label: 'p', num: true, cell: (x) => fmt.p(x.tp) },
          { key: 'n', label: 'n', num: true },
        ],
        rows,
        { id: 'correlations', short: true, initial: { key: 'rp', dir: 1 }, onRow: (x) => { feature = x.feature; pick.value = feature; drawFeature(); } },
      ),
    );
    principles.replaceChildren(...r.analysis.principles.map((p) => h('li', null, p)));
  }

  return { el, dbs: new Set([db]), crumbs: [[`run ${run}`, route(['run', db, run])]], refresh };
}
