// Charts (Chart.js, served from the package). Each chart is made once and updated in place
// when new data arrives, so a live run grows without the page flickering or reloading.
// Canvas text (labels, tooltips) is drawn, never parsed as HTML.
import { fmt } from './dom.js';

const Chart = window.Chart;
export const COLORS = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#dc2626', '#0891b2', '#ca8a04', '#db2777', '#4b5563', '#65a30d'];
const BASELINE = '#7c3aed';

Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif';
Chart.defaults.color = '#4b5563';
Chart.defaults.animation = false;

/** Names of reference lines, written at their right end inside the plot. */
const lineLabels = {
  id: 'lineLabels',
  afterDatasetsDraw(chart) {
    const { ctx, chartArea } = chart;
    ctx.save();
    ctx.font = '11px ' + Chart.defaults.font.family;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'bottom';
    let lastY = Infinity;
    const items = chart.data.datasets
      .map((d, i) => ({ d, meta: chart.getDatasetMeta(i) }))
      .filter((x) => x.d.refLabel && !x.meta.hidden && x.meta.data.length)
      .map((x) => ({ text: x.d.refLabel, y: x.meta.data[x.meta.data.length - 1].y, color: x.d.borderColor }))
      .filter((x) => x.y >= chartArea.top && x.y <= chartArea.bottom)
      .sort((a, b) => b.y - a.y);
    for (const it of items) {
      const y = Math.min(it.y - 2, lastY - 12); // keep labels of close lines apart
      ctx.fillStyle = it.color;
      ctx.fillText(it.text, chartArea.right - 4, y);
      lastY = y;
    }
    ctx.restore();
  },
};

function make(canvas, type, options, plugins = []) {
  return new Chart(canvas, { type, data: { datasets: [] }, options: { responsive: true, maintainAspectRatio: false, ...options }, plugins });
}

const axis = (title, extra = {}) => ({ type: 'linear', title: { display: true, text: title }, grid: { color: '#eef0f4' }, ...extra });

/** Range covering the values, with a margin; null when there are none. */
function range(values, pad = 0.04) {
  const v = values.filter((x) => Number.isFinite(x));
  if (!v.length) return {};
  let lo = Math.min(...v);
  let hi = Math.max(...v);
  if (hi === lo) {
    hi += Math.abs(hi) * 0.01 || 1;
    lo -= Math.abs(lo) * 0.01 || 1;
  }
  const m = (hi - lo) * pad;
  return { min: lo - m, max: hi + m };
}

function quantile(values, q) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return v.length ? v[Math.min(v.length - 1, Math.floor(q * (v.length - 1)))] : NaN;
}

function clickTo(go) {
  return (_e, elements, chart) => {
    const el = elements[0];
    if (!el) return;
    const p = chart.data.datasets[el.datasetIndex].data[el.index];
    if (p && p.id !== undefined) go(p.id);
  };
}

/**
 * Best and median fitness of the population against paid evaluations, baselines as
 * horizontal lines. The y range follows the best curve and the baselines; the median,
 * far above at the start, is clipped.
 */
export function curveChart(canvas) {
  const chart = make(
    canvas,
    'scatter',
    {
      scales: { x: axis('perplexity evaluations paid'), y: axis('perplexity (fitness)') },
      plugins: {
        legend: { labels: { filter: (item, data) => !data.datasets[item.datasetIndex].refLabel, boxHeight: 2 } },
        tooltip: { callbacks: { label: (c) => `${c.dataset.refLabel ?? c.dataset.label}: ${fmt.ppl(c.parsed.y)} at ${c.parsed.x} evaluations` } },
      },
    },
    [lineLabels],
  );
  return {
    chart,
    update(curve, baselines) {
      const best = curve.filter((c) => c.best !== null).map((c) => ({ x: c.evaluations, y: c.best }));
      const median = curve.filter((c) => c.median !== null).map((c) => ({ x: c.evaluations, y: c.median }));
      const xs = curve.map((c) => c.evaluations);
      const x0 = xs.length ? Math.min(...xs) : 0;
      const x1 = xs.length ? Math.max(...xs, x0 + 1) : 1;
      // Baselines far above where the search started (random pruning) would flatten the curve: they are named, not drawn.
      const top = best.length ? best[0].y : Infinity;
      const all = baselines.filter((b) => b.ppl !== null);
      const base = all.filter((b) => b.ppl <= top * 1.1);
      const off = all.filter((b) => b.ppl > top * 1.1);
      // 'before': a best value holds until the step that improves it (horizontal, then down).
      chart.data.datasets = [
        { label: 'best', data: best, showLine: true, borderColor: COLORS[0], backgroundColor: COLORS[0], pointRadius: 0, borderWidth: 2.5, stepped: 'before' },
        { label: 'median', data: median, showLine: true, borderColor: COLORS[1], backgroundColor: COLORS[1], pointRadius: 0, borderWidth: 1.5, borderDash: [6, 4] },
        ...base.map((b) => ({
          label: b.method,
          refLabel: `${b.method} ${fmt.ppl(b.ppl)}`,
          data: [{ x: x0, y: b.ppl }, { x: x1, y: b.ppl }],
          showLine: true,
          borderColor: b.method === 'dense' ? '#6b7280' : BASELINE,
          borderWidth: 1,
          borderDash: [2, 3],
          pointRadius: 0,
        })),
      ];
      const y = range([...best.map((p) => p.y), ...base.map((b) => b.ppl)]);
      chart.options.scales.y.min = y.min;
      chart.options.scales.y.max = y.max;
      chart.options.scales.x.min = x0;
      chart.options.scales.x.max = x1;
      chart.update('none');
      canvas.parentElement.dataset.points = String(best.length);
      return off.length ? `above the plot: ${off.map((b) => `${b.method} ${fmt.ppl(b.ppl)}`).join(', ')}` : '';
    },
  };
}

/** Every individual as (tree size, fitness), the Pareto front as a staircase. */
export function paretoChart(canvas, go) {
  const chart = make(canvas, 'scatter', {
    scales: { x: axis('tree size (nodes)'), y: axis('perplexity (fitness)') },
    onClick: clickTo(go),
    plugins: { tooltip: { callbacks: { label: (c) => { const p = c.raw; return `#${p.id}  ppl ${fmt.ppl(p.y)}  size ${p.x}  ${p.infix}`; } } } },
  });
  return {
    chart,
    update({ points, front }) {
      const pt = (p) => ({ x: p.size, y: p.fitness, id: p.id, infix: p.infix });
      chart.data.datasets = [
        { label: 'Pareto front', data: front.map(pt), showLine: true, stepped: 'before', borderColor: COLORS[0], backgroundColor: COLORS[0], pointRadius: 4, borderWidth: 2 },
        { label: 'all individuals', data: points.map(pt), borderColor: 'rgba(100,116,139,.35)', backgroundColor: 'rgba(100,116,139,.25)', pointRadius: 2.5 },
      ];
      const ys = front.map((p) => p.fitness);
      const cap = Math.max(...ys, quantile(points.map((p) => p.fitness), 0.5));
      const y = range([...ys, cap]);
      chart.options.scales.y.min = y.min;
      chart.options.scales.y.max = y.max;
      chart.update('none');
    },
  };
}

/** Deterministic horizontal spread for a discrete feature, so equal values do not pile up. */
const jitter = (id) => ((((id * 2654435761) >>> 0) % 1000) / 1000 - 0.5) * 0.35;

/** A tree feature against short-budget perplexity, one point per individual. */
export function featureChart(canvas, go) {
  const chart = make(canvas, 'scatter', {
    scales: { x: axis('feature'), y: axis('short-budget perplexity (log scale)', { type: 'logarithmic' }) },
    onClick: clickTo(go),
    plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `#${c.raw.id}  ${c.raw.feature} = ${c.raw.v}  ppl ${fmt.ppl(c.raw.y)}` } } },
  });
  return {
    chart,
    update(feature, points) {
      const binary = points.every((p) => p.x === 0 || p.x === 1);
      chart.data.datasets = [
        { label: feature, data: points.map((p) => ({ x: p.x + jitter(p.id), y: p.ppl, v: p.x, id: p.id, feature })), backgroundColor: 'rgba(37,99,235,.45)', borderColor: 'rgba(37,99,235,.7)', pointRadius: 3 },
      ];
      chart.options.scales.x.title.text = binary ? `${feature} (0 = no, 1 = yes)` : feature;
      chart.options.scales.x.ticks = binary ? { stepSize: 1, callback: (v) => (v === 0 ? 'no' : v === 1 ? 'yes' : '') } : { precision: 0 };
      chart.update('none');
    },
  };
}

/** Short-budget against full-budget perplexity for candidates run at both. */
export function fidelityChart(canvas, go) {
  const chart = make(canvas, 'scatter', {
    scales: { x: axis('short-budget perplexity'), y: axis('full-budget perplexity') },
    onClick: clickTo(go),
    plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `#${c.raw.id}  short ${fmt.ppl(c.raw.x)}  full ${fmt.ppl(c.raw.y)}` } } },
  });
  return {
    chart,
    update(pairs) {
      chart.data.datasets = [{ data: pairs.map((p) => ({ x: p.short, y: p.full, id: p.id })), backgroundColor: 'rgba(234,88,12,.5)', borderColor: 'rgba(234,88,12,.8)', pointRadius: 3.5 }];
      const x = range([Math.min(...pairs.map((p) => p.short)), quantile(pairs.map((p) => p.short), 0.95)]);
      const y = range([Math.min(...pairs.map((p) => p.full)), quantile(pairs.map((p) => p.full), 0.95)]);
      Object.assign(chart.options.scales.x, x);
      Object.assign(chart.options.scales.y, y);
      chart.update('none');
    },
  };
}

/** Best fitness of several runs against paid evaluations. */
export function compareChart(canvas) {
  const chart = make(canvas, 'scatter', { scales: { x: axis('perplexity evaluations paid'), y: axis('best perplexity (fitness)') } });
  return {
    chart,
    update(runs) {
      chart.data.datasets = runs.map((r, i) => ({
        label: `${r.label} · run ${r.summary.run}`,
        data: r.curve.filter((c) => c.best !== null).map((c) => ({ x: c.evaluations, y: c.best })),
        showLine: true,
        stepped: 'before',
        pointRadius: 0,
        borderWidth: 2,
        borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length],
      }));
      chart.update('none');
    },
  };
}
