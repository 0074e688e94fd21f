// Runs side by side: their best-so-far curves on one plot, and their numbers and
// settings in columns, with the settings that differ marked.
import { compareChart } from './charts.js';
import { fmt, getJson, h, link, metric, status } from './dom.js';
import { bestVsBaseline, modelCell } from './runs-view.js';

export function compareView(spec) {
  const box = h('div', { class: 'chart tall' }, h('canvas'));
  const chart = compareChart(box.firstChild);
  const grid = h('div', { class: 'table-wrap full' });
  const el = h('div', { class: 'stack' }, h('h1', null, 'Runs side by side'), h('section', { class: 'panel' }, h('h2', null, 'Best fitness over paid evaluations'), box), h('section', { class: 'panel' }, grid));
  const dbs = new Set(spec.split(',').map((p) => Number(p.split(':')[0])));

  async function refresh() {
    const runs = await getJson(`/api/compare?runs=${encodeURIComponent(spec)}`);
    chart.update(runs);
    const rows = [
      ['run', (r) => link(['run', r.db, r.summary.run], `${r.label} · run ${r.summary.run}`)],
      ['status', (r) => status(r.summary)],
      ['model', (r) => modelCell(r.summary)],
      ['best ppl', (r) => bestVsBaseline(r.summary)],
      ['best metric', (r) => (r.summary.best ? metric(r.summary.best.infix, r.summary.best.latex) : '–')],
      ['dense model', (r) => fmt.ppl(r.summary.dense)],
      ['evaluations paid', (r) => fmt.num(r.summary.counts.paid.short + r.summary.counts.paid.full)],
      ['individuals', (r) => fmt.num(r.summary.counts.individuals)],
      ['elapsed', (r) => fmt.duration(r.summary.seconds)],
      ['evaluations / min', (r) => fmt.num(r.summary.perMinute, 1)],
      ['failures', (r) => String(r.summary.counts.failed.error + r.summary.counts.failed.timeout + r.summary.counts.failed.crash)],
    ];
    const keys = [...new Set(runs.flatMap((r) => Object.keys(r.summary.config)))].sort();
    const differs = (k) => new Set(runs.map((r) => JSON.stringify(r.summary.config[k]))).size > 1;
    const configRows = [...keys.filter(differs), ...keys.filter((k) => !differs(k))];
    grid.replaceChildren(
      h('table', { class: 'diff', id: 'compare' },
        h('tbody', null,
          rows.map(([label, cell]) => h('tr', null, h('th', null, label), runs.map((r) => h('td', null, cell(r))))),
          configRows.map((k) => h('tr', null, h('th', { title: differs(k) ? 'differs between these runs' : null }, k + (differs(k) ? ' ≠' : '')), runs.map((r) => h('td', { class: differs(k) ? 'changed' : null }, h('code', null, JSON.stringify(r.summary.config[k]) ?? '–'))))),
        ),
      ),
    );
  }
  return { el, dbs, crumbs: [['compare', null]], refresh };
}
