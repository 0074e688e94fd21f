// Building the page. Every string that comes from a database goes into the DOM as a text
// node or an attribute value set through the DOM API, never as HTML: `h` has no way to
// insert markup, so a metric holding "<script>" shows as those characters.

/** An element with properties (class, on<event>, dataset, other attributes) and children (nodes or text). */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const kid of kids.flat(Infinity)) if (kid !== null && kid !== undefined && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

/** A link inside the page (hash route); parts are encoded so no value can leave the fragment. */
export function link(parts, ...kids) {
  return h('a', { href: route(parts) }, ...kids);
}

export function route(parts) {
  return '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/');
}

const finite = (v) => typeof v === 'number' && Number.isFinite(v);

export const fmt = {
  ppl: (v) => (finite(v) ? v.toFixed(2) : '–'),
  num: (v, d = 0) => (finite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '–'),
  r: (v) => (finite(v) ? (v >= 0 ? '+' : '') + v.toFixed(2) : '–'),
  p: (v) => (finite(v) ? (v < 0.001 ? '<0.001' : v.toFixed(3)) : '–'),
  secs: (v) => (finite(v) ? (v < 10 ? v.toFixed(2) + ' s' : duration(v)) : '–'),
  duration: (v) => (finite(v) ? duration(v) : '–'),
  ago: (iso) => {
    const t = Date.parse(iso);
    return Number.isFinite(t) ? duration(Math.max(0, (Date.now() - t) / 1000)) + ' ago' : '–';
  },
  short: (s, n = 12) => (typeof s === 'string' ? s.slice(0, n) : '–'),
};

function duration(s) {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A metric rendered by KaTeX (its own DOM, no trusted commands), or its infix when there is no LaTeX. */
export function formula(latex, infix, display = false) {
  const el = h('span', { class: 'formula' });
  if (typeof latex === 'string' && window.katex) {
    try {
      window.katex.render(latex, el, { throwOnError: false, displayMode: display, trust: false, strict: 'ignore', output: 'htmlAndMathml' });
      return el;
    } catch {
      el.textContent = '';
    }
  }
  el.textContent = infix ?? '';
  return el;
}

/** A metric: its infix (what `prune --metric` reads) and the rendered formula. */
export function metric(infix, latex) {
  return h('span', { class: 'metric' }, h('code', { class: 'infix' }, infix), latex ? formula(latex, infix) : null);
}

const sortState = new Map();

/**
 * A sortable table. columns: {key, label, num, value(row) for sorting, cell(row) for display,
 * title}. Clicking a header sorts by it (again: reverses); the order survives live updates.
 * opts: {id, rowClass(row), onRow(row), empty, initial: {key, dir}}.
 */
export function table(columns, rows, opts = {}) {
  const id = opts.id ?? columns.map((c) => c.key).join(',');
  const wrap = h('div', { class: 'table-wrap' + (opts.short ? ' short' : '') });
  const sortBy = (c) => {
    const cur = sortState.get(id) ?? opts.initial;
    sortState.set(id, { key: c.key, dir: cur && cur.key === c.key ? -cur.dir : 1 });
    draw();
  };
  const draw = () => {
    const st = sortState.get(id) ?? opts.initial ?? null;
    const col = st && columns.find((c) => c.key === st.key);
    const sorted = [...rows];
    if (col) {
      const val = col.value ?? ((r) => r[col.key]);
      sorted.sort((a, b) => compare(val(a), val(b), st.dir));
    }
    const head = h(
      'tr',
      null,
      columns.map((c) =>
        h('th', {
          class: [c.num ? 'num' : '', col === c ? 'sorted' : '', col === c && st.dir < 0 ? 'desc' : ''].join(' ').trim() || null,
          title: c.title ?? 'sort',
          tabindex: 0,
          'aria-sort': col === c ? (st.dir < 0 ? 'descending' : 'ascending') : null,
          onclick: () => sortBy(c),
          onkeydown: (e) => (e.key === 'Enter' || e.key === ' ') && (e.preventDefault(), sortBy(c)),
        }, c.label),
      ),
    );
    const body = sorted.map((r) =>
      h(
        'tr',
        { class: [opts.rowClass?.(r) ?? '', opts.onRow ? 'clickable' : ''].join(' ').trim() || null, onclick: opts.onRow ? (e) => e.target.closest('a,input,button') || opts.onRow(r) : null },
        columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell ? c.cell(r) : display(r[c.key]))),
      ),
    );
    const t = h('table', { id: opts.id ?? null }, h('thead', null, head), h('tbody', null, body));
    keepingFocus(() => wrap.replaceChildren(rows.length ? t : h('div', { class: 'empty' }, opts.empty ?? 'nothing yet')));
  };
  draw();
  return wrap;
}

/**
 * Runs redraw (sync or async) and puts the keyboard back on the table header it was on: sorting
 * and live updates replace tables, and a keyboard user must not lose their place to them.
 */
export function keepingFocus(redraw) {
  const a = document.activeElement;
  const id = a?.tagName === 'TH' ? a.closest('table[id]')?.id : undefined;
  const at = id ? [...document.getElementById(id).querySelectorAll('th')].indexOf(a) : -1;
  const restore = (v) => {
    if (id && !document.activeElement?.closest?.('table')) document.getElementById(id)?.querySelectorAll('th')[at]?.focus();
    return v;
  };
  const r = redraw();
  return r instanceof Promise ? r.then(restore) : restore(r);
}

function display(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : fmt.ppl(v);
  return String(v);
}

/** Ascending or descending; missing and non-finite values last either way. */
function compare(a, b, dir) {
  const bad = (v) => v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v));
  if (bad(a) || bad(b)) return bad(a) === bad(b) ? 0 : bad(a) ? 1 : -1;
  if (typeof a === 'number' && typeof b === 'number') return (a - b) * dir;
  return String(a).localeCompare(String(b), 'en', { numeric: true }) * dir;
}

export function panel(title, hint, ...kids) {
  return h('section', { class: 'panel' }, h('h2', null, title, hint ? h('span', { class: 'hint' }, hint) : null), ...kids);
}

export function card(k, v, s, cls) {
  return h('div', { class: 'card' + (cls ? ' ' + cls : '') }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v), s ? h('div', { class: 's' }, s) : null);
}

const STALE_S = 600;

/** A run's status, with "no write for …" when a running run has gone quiet (killed, or its machine lost). */
export function status(summary) {
  const quiet = (Date.now() - Date.parse(summary.lastWrite)) / 1000;
  if (summary.status === 'running' && quiet > STALE_S) return h('span', { class: 'badge stale', title: `last write ${summary.lastWrite}` }, `running? no write for ${fmt.duration(quiet)}`);
  return h('span', { class: `badge ${['running', 'finished', 'failed', 'interrupted'].includes(summary.status) ? summary.status : ''}`, title: summary.error ?? null }, summary.status);
}

export async function getJson(url) {
  const r = await fetch(url, { headers: { Accept: 'application/json' } });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error ?? `HTTP ${r.status}`);
  return body;
}
