/**
 * The fitness curve of a run as a self-contained SVG line plot (no dependency): best and
 * median population perplexity per step, with the baselines as labelled horizontal lines.
 * Perplexities span orders of magnitude early in a run, so the y axis turns logarithmic
 * when the plotted values span more than a factor of 4.
 */

export interface PlotSeries {
  label: string;
  points: { x: number; y: number | null }[];
  dash?: string;
  color: string;
}

export interface PlotInput {
  title: string;
  xLabel: string;
  yLabel: string;
  series: PlotSeries[];
  /** Horizontal reference lines (baselines). */
  hlines?: { label: string; y: number }[];
  width?: number;
  height?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round a tick value for display. */
export function fmtTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(0);
  if (a >= 100) return v.toFixed(0);
  return String(Number(v.toPrecision(3)));
}

/** "Nice" linear ticks (1, 2, 5 x 10^k steps) covering [lo, hi]. */
export function linearTicks(lo: number, hi: number, target = 6): number[] {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / target;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Log ticks at 1, 2, 5 x 10^k inside [lo, hi] (thinned to 1 x 10^k when many). */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** k;
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(Number(v.toPrecision(12)));
    }
  }
  return out.length > 8 ? out.filter((v) => Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9) : out;
}

export function linePlotSvg(input: PlotInput): string {
  const W = input.width ?? 720;
  const H = input.height ?? 420;
  const m = { left: 70, right: 150, top: 40, bottom: 50 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of input.series)
    for (const p of s.points) {
      xs.push(p.x);
      if (p.y !== null && Number.isFinite(p.y) && p.y > 0) ys.push(p.y);
    }
  for (const h of input.hlines ?? []) if (Number.isFinite(h.y) && h.y > 0) ys.push(h.y);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(input.title)}</text>`);
  if (xs.length === 0 || ys.length === 0) {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no data yet</text></svg>`);
    return parts.join('\n') + '\n';
  }
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x1 === x0) x1 = x0 + 1;
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  const log = y1 / y0 > 4;
  if (log) {
    y0 /= 1.1;
    y1 *= 1.1;
  } else {
    const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.05 || 1;
    y0 -= pad;
    y1 += pad;
  }
  if (x1 === x0) x0 -= 1;
  const fy = (v: number): number => (log ? (Math.log(y1) - Math.log(v)) / (Math.log(y1) - Math.log(y0)) : (y1 - v) / (y1 - y0)) * ph + m.top;
  const fx = (v: number): number => ((v - x0) / (x1 - x0)) * pw + m.left;
  const r = (v: number): string => v.toFixed(1);

  // Axes, grid and ticks.
  parts.push(`<g stroke="#ddd" stroke-width="1">`);
  const yt = log ? logTicks(y0, y1) : linearTicks(y0, y1);
  for (const t of yt) parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${r(fy(t))}" y2="${r(fy(t))}"/>`);
  parts.push(`</g>`);
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  for (const t of yt) parts.push(`<text x="${m.left - 6}" y="${r(fy(t) + 4)}" text-anchor="end">${fmtTick(t)}</text>`);
  for (const t of linearTicks(x0, x1).filter((v) => Number.isInteger(v))) {
    parts.push(`<line x1="${r(fx(t))}" x2="${r(fx(t))}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="#333"/>`);
    parts.push(`<text x="${r(fx(t))}" y="${m.top + ph + 18}" text-anchor="middle">${fmtTick(t)}</text>`);
  }
  parts.push(`<text x="${m.left + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(input.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(input.yLabel)}${log ? ' (log scale)' : ''}</text>`);

  // Baselines as dotted lines labelled at the right edge.
  const hl = (input.hlines ?? []).filter((h) => Number.isFinite(h.y) && h.y > 0).sort((a, b) => a.y - b.y);
  let lastLabelY = -Infinity;
  for (const h of hl) {
    const y = fy(h.y);
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${r(y)}" y2="${r(y)}" stroke="#999" stroke-dasharray="2 3"/>`);
    const ly = Math.max(y + 4, lastLabelY + 13);
    lastLabelY = ly;
    parts.push(`<text x="${m.left + pw + 6}" y="${r(ly)}" fill="#666">${esc(h.label)} ${fmtTick(h.y)}</text>`);
  }

  // Series.
  input.series.forEach((s, i) => {
    const segs: string[] = [];
    let cur: string[] = [];
    for (const p of s.points) {
      if (p.y === null || !Number.isFinite(p.y) || p.y <= 0) {
        if (cur.length) segs.push(cur.join(' '));
        cur = [];
        continue;
      }
      cur.push(`${r(fx(p.x))},${r(fy(p.y))}`);
    }
    if (cur.length) segs.push(cur.join(' '));
    for (const seg of segs)
      parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} points="${seg}"/>`);
    const ly = m.top + 14 + i * 16;
    parts.push(`<line x1="${m.left + 10}" x2="${m.left + 34}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    parts.push(`<text x="${m.left + 40}" y="${ly}">${esc(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
