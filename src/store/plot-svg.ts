/**
 * The fitness curve of a run as a line plot with no dependency: best and median population
 * perplexity per step, with the baselines as labelled horizontal lines. Perplexities span
 * orders of magnitude early in a run, so the y axis turns logarithmic when the plotted
 * values span more than a factor of 4. The plot is laid out once as a scene of lines and
 * texts, written as SVG here and rasterised to PNG by plot-png.ts.
 */

export interface PlotSeries {
  label: string;
  points: { x: number; y: number | null }[];
  dash?: string;
  color: string;
  /**
   * Whether the series sets the y range (default true). A series that does not is drawn
   * clipped to the frame: the population median starts orders of magnitude above the best
   * and would otherwise flatten everything that matters.
   */
  setsRange?: boolean;
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

/** What a plot is made of, in SVG user units (pixels at scale 1). */
export type SceneItem =
  | { kind: 'rect'; x: number; y: number; w: number; h: number; fill?: string; stroke?: string }
  | { kind: 'line'; points: [number, number][]; color: string; width: number; dash?: [number, number]; series?: boolean }
  | { kind: 'text'; x: number; y: number; text: string; anchor: 'start' | 'middle' | 'end'; size: number; color: string; rotate?: boolean };

export interface Scene {
  width: number;
  height: number;
  items: SceneItem[];
}

const parseDash = (d?: string): [number, number] | undefined => {
  if (!d) return undefined;
  const [a, b] = d.split(/\s+/).map(Number);
  return [a!, b ?? a!];
};

/** Lay the plot out. */
export function linePlotScene(input: PlotInput): Scene {
  const W = input.width ?? 720;
  const H = input.height ?? 420;
  const m = { left: 70, right: 175, top: 40, bottom: 50 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const items: SceneItem[] = [];
  const text = (x: number, y: number, t: string, anchor: 'start' | 'middle' | 'end' = 'start', o: { size?: number; color?: string; rotate?: boolean } = {}): void => {
    items.push({ kind: 'text', x, y, text: t, anchor, size: o.size ?? 12, color: o.color ?? '#000', ...(o.rotate ? { rotate: true } : {}) });
  };
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of input.series)
    for (const p of s.points) {
      xs.push(p.x);
      if (s.setsRange !== false && p.y !== null && Number.isFinite(p.y) && p.y > 0) ys.push(p.y);
    }
  for (const h of input.hlines ?? []) if (Number.isFinite(h.y) && h.y > 0) ys.push(h.y);
  items.push({ kind: 'rect', x: 0, y: 0, w: W, h: H, fill: '#ffffff' });
  text(W / 2, 22, input.title, 'middle', { size: 15 });
  if (xs.length === 0 || ys.length === 0) {
    text(W / 2, H / 2, 'no data yet', 'middle');
    return { width: W, height: H, items };
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
  const fyRaw = (v: number): number => (log ? (Math.log(y1) - Math.log(v)) / (Math.log(y1) - Math.log(y0)) : (y1 - v) / (y1 - y0)) * ph + m.top;
  const fy = (v: number): number => Math.min(m.top + ph, Math.max(m.top, fyRaw(v)));
  const fx = (v: number): number => ((v - x0) / (x1 - x0)) * pw + m.left;

  // Grid, frame, ticks and axis labels.
  const yt = log ? logTicks(y0, y1) : linearTicks(y0, y1);
  for (const t of yt) items.push({ kind: 'line', points: [[m.left, fy(t)], [m.left + pw, fy(t)]], color: '#dddddd', width: 1 });
  items.push({ kind: 'rect', x: m.left, y: m.top, w: pw, h: ph, stroke: '#333333' });
  for (const t of yt) text(m.left - 6, fy(t) + 4, fmtTick(t), 'end');
  for (const t of linearTicks(x0, x1).filter((v) => Number.isInteger(v))) {
    items.push({ kind: 'line', points: [[fx(t), m.top + ph], [fx(t), m.top + ph + 5]], color: '#333333', width: 1 });
    text(fx(t), m.top + ph + 18, fmtTick(t), 'middle');
  }
  text(m.left + pw / 2, H - 10, input.xLabel, 'middle');
  text(16, m.top + ph / 2, `${input.yLabel}${log ? ' (log scale)' : ''}`, 'middle', { rotate: true });

  // Baselines as dotted lines labelled at the right edge.
  const hl = (input.hlines ?? []).filter((h) => Number.isFinite(h.y) && h.y > 0).sort((a, b) => b.y - a.y); // top of the frame first
  // Labels at their lines, pushed apart (13 units) and kept inside the frame's height.
  const want = hl.map((h) => fy(h.y) + 4);
  const at = [...want];
  for (let i = 1; i < at.length; i++) at[i] = Math.max(at[i]!, at[i - 1]! + 13);
  const bottom = m.top + ph + m.bottom - 6;
  for (let i = at.length - 1; i >= 0; i--) at[i] = Math.min(at[i]!, i === at.length - 1 ? bottom : at[i + 1]! - 13);
  hl.forEach((h, i) => {
    items.push({ kind: 'line', points: [[m.left, fy(h.y)], [m.left + pw, fy(h.y)]], color: '#999999', width: 1, dash: [2, 3] });
    text(m.left + pw + 6, at[i]!, `${h.label} ${h.y < 1000 ? h.y.toFixed(2) : fmtTick(h.y)}`, 'start', { color: '#666666' });
  });

  // Series, broken where a value is missing, and their legend (on a white box over the plot).
  const legendW = 44 + 9 * Math.max(0, ...input.series.map((s) => s.label.length));
  const legendBox: SceneItem = { kind: 'rect', x: m.left + 4, y: m.top + 2, w: legendW, h: 16 * input.series.length + 4, fill: '#ffffff', stroke: '#cccccc' };
  input.series.forEach((s) => {
    let cur: [number, number][] = [];
    const flush = (): void => {
      if (cur.length) items.push({ kind: 'line', points: cur, color: s.color, width: 2, dash: parseDash(s.dash), series: true });
      cur = [];
    };
    for (const p of s.points) {
      if (p.y === null || !Number.isFinite(p.y) || p.y <= 0) flush();
      else cur.push([fx(p.x), fy(p.y)]);
    }
    flush();
  });
  items.push(legendBox);
  input.series.forEach((s, i) => {
    const ly = m.top + 14 + i * 16;
    items.push({ kind: 'line', points: [[m.left + 10, ly - 4], [m.left + 34, ly - 4]], color: s.color, width: 2, dash: parseDash(s.dash) });
    text(m.left + 40, ly, s.label);
  });
  return { width: W, height: H, items };
}

/** The scene as a self-contained SVG document. */
export function sceneSvg(sc: Scene): string {
  const r = (v: number): string => v.toFixed(1);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${sc.width}" height="${sc.height}" viewBox="0 0 ${sc.width} ${sc.height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  for (const it of sc.items) {
    if (it.kind === 'rect') {
      parts.push(`<rect x="${it.x}" y="${it.y}" width="${it.w}" height="${it.h}" fill="${it.fill ?? 'none'}"${it.stroke ? ` stroke="${it.stroke}"` : ''}/>`);
    } else if (it.kind === 'line') {
      const dash = it.dash ? ` stroke-dasharray="${it.dash[0]} ${it.dash[1]}"` : '';
      if (!it.series && it.points.length === 2) {
        const [[ax, ay], [bx, by]] = it.points as [[number, number], [number, number]];
        parts.push(`<line x1="${r(ax)}" x2="${r(bx)}" y1="${r(ay)}" y2="${r(by)}" stroke="${it.color}"${it.width !== 1 ? ` stroke-width="${it.width}"` : ''}${dash}/>`);
      } else {
        parts.push(`<polyline fill="none" stroke="${it.color}" stroke-width="${it.width}"${dash} points="${it.points.map(([x, y]) => `${r(x)},${r(y)}`).join(' ')}"/>`);
      }
    } else {
      const pos = it.rotate ? `transform="translate(${r(it.x)} ${r(it.y)}) rotate(-90)"` : `x="${r(it.x)}" y="${r(it.y)}"`;
      const anchor = it.anchor === 'start' ? '' : ` text-anchor="${it.anchor}"`;
      const size = it.size === 12 ? '' : ` font-size="${it.size}"`;
      const fill = it.color === '#000' ? '' : ` fill="${it.color}"`;
      parts.push(`<text ${pos}${anchor}${size}${fill}>${esc(it.text)}</text>`);
    }
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

