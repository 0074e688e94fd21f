/**
 * PNG output of a plot scene, with no dependency: lines are drawn with a round brush
 * along their length (dashes measured along the path), text with a 5x8 bitmap font, and
 * the image is written as an 8-bit RGB PNG through node:zlib. Drawn at `scale` pixels
 * per SVG unit (default 2) so thin lines and the small font stay legible.
 */
import { deflateSync } from 'node:zlib';
import { ADVANCE, GLYPH_H, GLYPH_W, glyph } from './font5x8.ts';
import type { Scene } from './plot-svg.ts';

type RGB = [number, number, number];

function color(c: string): RGB {
  let h = c.replace('#', '');
  if (h.length === 3) h = h.replace(/./g, (x) => x + x);
  const v = parseInt(h, 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

export class Canvas {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.data = new Uint8Array(width * height * 3).fill(255);
  }
  set(x: number, y: number, c: RGB): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const o = (y * this.width + x) * 3;
    this.data[o] = c[0];
    this.data[o + 1] = c[1];
    this.data[o + 2] = c[2];
  }
  get(x: number, y: number): RGB {
    const o = (y * this.width + x) * 3;
    return [this.data[o]!, this.data[o + 1]!, this.data[o + 2]!];
  }
  fillRect(x: number, y: number, w: number, h: number, c: RGB): void {
    for (let j = Math.floor(y); j < Math.ceil(y + h); j++) for (let i = Math.floor(x); i < Math.ceil(x + w); i++) this.set(i, j, c);
  }
  /** A polyline of the given pixel width; `dash` = [on, off] lengths in pixels along the path. */
  polyline(pts: [number, number][], c: RGB, width: number, dash?: [number, number]): void {
    const r = Math.max(0.5, width / 2);
    let along = 0;
    for (let k = 1; k < pts.length; k++) {
      const [ax, ay] = pts[k - 1]!;
      const [bx, by] = pts[k]!;
      const len = Math.hypot(bx - ax, by - ay);
      const steps = Math.max(1, Math.ceil(len * 2));
      for (let s = 0; s <= steps; s++) {
        const t = s / steps;
        const d = along + t * len;
        if (dash && d % (dash[0] + dash[1]) >= dash[0]) continue;
        const x = ax + (bx - ax) * t;
        const y = ay + (by - ay) * t;
        for (let j = Math.floor(y - r); j <= Math.ceil(y + r); j++)
          for (let i = Math.floor(x - r); i <= Math.ceil(x + r); i++) if ((i - x) ** 2 + (j - y) ** 2 <= r * r + 0.25) this.set(i, j, c);
      }
      along += len;
    }
  }
  /** Text with its baseline at y; `px` = size of one font pixel; rotated texts read bottom to top. */
  text(x: number, y: number, s: string, anchor: 'start' | 'middle' | 'end', px: number, c: RGB, rotate = false): void {
    const w = s.length * ADVANCE * px - px;
    const off = anchor === 'start' ? 0 : anchor === 'middle' ? -w / 2 : -w;
    for (let k = 0; k < s.length; k++) {
      const g = glyph(s[k]!);
      for (let gy = 0; gy < GLYPH_H; gy++)
        for (let gx = 0; gx < GLYPH_W; gx++) {
          if (!g[gy * GLYPH_W + gx]) continue;
          const u = off + (k * ADVANCE + gx) * px; // along the text
          const v = (gy - 6) * px; // from the baseline (row 6), down positive
          for (let a = 0; a < px; a++)
            for (let b = 0; b < px; b++) {
              if (rotate) this.set(x + v + b, y - u - a, c);
              else this.set(x + u + a, y + v + b, c);
            }
        }
    }
  }
}

/** Rasterise a scene at `scale` pixels per unit. */
export function rasterize(sc: Scene, scale = 2): Canvas {
  const cv = new Canvas(Math.round(sc.width * scale), Math.round(sc.height * scale));
  for (const it of sc.items) {
    if (it.kind === 'rect') {
      if (it.fill) cv.fillRect(it.x * scale, it.y * scale, it.w * scale, it.h * scale, color(it.fill));
      if (it.stroke) {
        const [x, y, w, h] = [it.x * scale, it.y * scale, it.w * scale, it.h * scale];
        cv.polyline([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]], color(it.stroke), scale);
      }
    } else if (it.kind === 'line') {
      cv.polyline(
        it.points.map(([x, y]) => [x * scale, y * scale]),
        color(it.color),
        it.width * scale,
        it.dash ? [it.dash[0] * scale, it.dash[1] * scale] : undefined,
      );
    } else {
      // The font's cap height is 7 pixels: 12 units of SVG text ~ 8.5 units of cap height.
      const px = Math.max(1, Math.round((it.size * scale) / 8.5));
      cv.text(it.x * scale, it.y * scale, it.text, it.anchor, px, color(it.color), it.rotate);
    }
  }
  return cv;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 as PNG chunks use it. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 255]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** An 8-bit RGB PNG of the canvas. */
export function encodePng(cv: Canvas): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(cv.width, 0);
  ihdr.writeUInt32BE(cv.height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((cv.width * 3 + 1) * cv.height);
  for (let y = 0; y < cv.height; y++) {
    raw[y * (cv.width * 3 + 1)] = 0; // filter: none
    raw.set(cv.data.subarray(y * cv.width * 3, (y + 1) * cv.width * 3), y * (cv.width * 3 + 1) + 1);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', new Uint8Array(0))]);
}

export function scenePng(sc: Scene, scale = 2): Buffer {
  return encodePng(rasterize(sc, scale));
}
