/**
 * Layer statistics files in the safetensors format (8-byte little-endian header
 * length, a JSON header of {name: {dtype, shape, data_offsets}}, then raw data), so
 * G and X computed here or with PyTorch elsewhere travel between tools. Tensors are
 * read one at a time from disk; a file holding G for a 7B model never sits in memory
 * whole.
 */
import fs from 'node:fs';
import os from 'node:os';
import { InputError, check } from '../errors.ts';
import { decodeFloats, encodeHeader, parseSafetensorsHeader, safetensorsHeaderLength, type TensorEntry } from '../model/safetensors.ts';
import { removeStaleTemps, tempPath } from '../files.ts';
import { statName, type LayerShape, type LayerStats, type StatsNeed } from './layer-stats.ts';

/** A tensor's dtype, shape and absolute byte range in its file. */
export type SafetensorInfo = TensorEntry;

// F32 data is copied as bytes, which is only right on little-endian hosts (x86, arm).
if (os.endianness() !== 'LE') throw new Error('stats-file: big-endian hosts are not supported');

/** An open safetensors file read synchronously (the search's setup reads statistics in sync code): the header, tensors on demand. */
export class SafetensorsFile {
  private constructor(
    readonly file: string,
    private fd: number,
    readonly tensors: Map<string, SafetensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  static open(file: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new InputError(`stats file ${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    try {
      const size = fs.fstatSync(fd).size;
      const first8 = Buffer.alloc(8);
      if (size >= 8) fs.readSync(fd, first8, 0, 8, 0);
      const name = `stats file ${file}`;
      const hb = Buffer.alloc(safetensorsHeaderLength(first8, name, size));
      fs.readSync(fd, hb, 0, hb.length, 8);
      const h = parseSafetensorsHeader(hb, name, size);
      return new SafetensorsFile(file, fd, h.tensors, h.metadata);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** One tensor converted to float32. */
  read(name: string): Float32Array {
    const info = this.tensors.get(name);
    if (!info) throw new InputError(`stats file ${this.file}: no tensor ${name}`);
    const nbytes = info.end - info.begin;
    const buf = Buffer.alloc(nbytes);
    let off = 0;
    while (off < nbytes) {
      const got = fs.readSync(this.fd, buf, off, Math.min(nbytes - off, 1 << 30), info.begin + off);
      if (got <= 0) throw new InputError(`stats file ${this.file}: truncated tensor ${name}`);
      off += got;
    }
    return decodeFloats(buf, info.dtype, info.shape.reduce((p, d) => p * d, 1));
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/**
 * Write float32 tensors as safetensors. Written to a temporary file beside the target
 * and renamed at the end, so a failure never leaves a half-written file in place.
 * `tensors` may be a generator, so only one tensor needs to exist at a time.
 */
export function writeSafetensors(file: string, shapes: Array<{ name: string; shape: number[] }>, tensors: Iterable<NamedTensor>, metadata: Record<string, string> = {}): void {
  const hb = encodeHeader(shapes.map((t) => ({ ...t, dtype: 'F32' as const })), metadata);
  removeStaleTemps(file);
  const tmp = tempPath(file);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, hb);
    let i = 0;
    for (const t of tensors) {
      const s = shapes[i++];
      if (!s || s.name !== t.name) throw new Error(`writeSafetensors: tensor ${t.name} out of order (expected ${s?.name})`);
      const n = s.shape.reduce((a, d) => a * d, 1);
      if (t.data.length !== n) throw new Error(`writeSafetensors: tensor ${t.name} has ${t.data.length} values for shape [${s.shape}]`);
      let off = 0;
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      while (off < bytes.length) off += fs.writeSync(fd, bytes, off, Math.min(bytes.length - off, 1 << 30));
    }
    if (i !== shapes.length) throw new Error(`writeSafetensors: ${i} tensors written, ${shapes.length} declared`);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Write `L.G` [out, in] and `L.X` [in] for every layer (only the `kinds` asked for). `get` is called once per layer
 * in order, so statistics can be produced or loaded one layer at a time.
 */
export function writeStatsFile(file: string, layers: LayerShape[], get: (layer: LayerShape) => LayerStats, metadata: Record<string, string> = {}, kinds: StatsNeed = { G: true, X: true }): void {
  const shapes: Array<{ name: string; shape: number[] }> = [];
  for (const l of layers) {
    if (kinds.G) shapes.push({ name: statName(l.name, 'G'), shape: [l.out, l.in] });
    if (kinds.X) shapes.push({ name: statName(l.name, 'X'), shape: [l.in] });
  }
  function* gen(): Generator<NamedTensor> {
    for (const l of layers) {
      const s = get(l);
      if ((kinds.G && !s.G) || (kinds.X && !s.X)) throw new Error(`writeStatsFile: layer ${l.name} lacks ${kinds.G && !s.G ? 'G' : 'X'}`);
      if (kinds.G) yield { name: statName(l.name, 'G'), shape: [l.out, l.in], data: s.G! };
      if (kinds.X) yield { name: statName(l.name, 'X'), shape: [l.in], data: s.X! };
    }
  }
  writeSafetensors(file, shapes, gen(), metadata);
}

/**
 * A statistics file checked against a model's prunable layers: every tensor must be
 * `<layer>.G` of shape [out, in] or `<layer>.X` of shape [in] (or [1, in]) for a layer
 * of the model, and every layer must have each kind in `need`.
 */
export class LayerStatsFile {
  private constructor(private readonly st: SafetensorsFile, readonly has: StatsNeed) {}

  static open(file: string, layers: LayerShape[], need: StatsNeed): LayerStatsFile {
    const st = SafetensorsFile.open(file);
    try {
      const byName = new Map(layers.map((l) => [l.name, l]));
      let hasG = false;
      let hasX = false;
      for (const [name, info] of st.tensors) {
        const m = /^(.*)\.([GX])$/.exec(name);
        const layer = m ? byName.get(m[1]!) : undefined;
        if (!m || !layer) throw new InputError(`stats file ${file}: tensor ${name} does not name a prunable layer of the model (expected <layer>.G or <layer>.X, e.g. ${statName(layers[0]?.name ?? 'model.layers.0.self_attn.q_proj', 'G')})`);
        if (m[2] === 'G') {
          hasG = true;
          check(info.shape.length === 2 && info.shape[0] === layer.out && info.shape[1] === layer.in, `stats file ${file}: ${name} has shape [${info.shape}], the model's layer is [${layer.out}, ${layer.in}]`);
        } else {
          hasX = true;
          const ok = (info.shape.length === 1 && info.shape[0] === layer.in) || (info.shape.length === 2 && info.shape[0] === 1 && info.shape[1] === layer.in);
          check(ok, `stats file ${file}: ${name} has shape [${info.shape}], expected [${layer.in}]`);
        }
      }
      for (const kind of ['G', 'X'] as const) {
        if (!need[kind]) continue;
        const missing = layers.filter((l) => !st.tensors.has(statName(l.name, kind)));
        if (missing.length > 0) throw new InputError(`stats file ${file}: no ${kind} for ${missing.length} of ${layers.length} layers (first: ${statName(missing[0]!.name, kind)})`);
      }
      // A kind present for some layers must be present for all, or results would mix sources.
      for (const [kind, present] of [['G', hasG], ['X', hasX]] as const) {
        if (!present) continue;
        const missing = layers.filter((l) => !st.tensors.has(statName(l.name, kind)));
        if (missing.length > 0) throw new InputError(`stats file ${file}: ${kind} missing for ${missing.length} of ${layers.length} layers (first: ${statName(missing[0]!.name, kind)})`);
      }
      return new LayerStatsFile(st, { G: hasG, X: hasX });
    } catch (e) {
      st.close();
      throw e;
    }
  }

  get file(): string {
    return this.st.file;
  }

  /** G and X of one layer (null for kinds the file does not hold, or `want` leaves out). */
  get(layer: string, want: Partial<StatsNeed> = {}): LayerStats {
    return {
      G: this.has.G && want.G !== false ? this.st.read(statName(layer, 'G')) : null,
      X: this.has.X && want.X !== false ? this.st.read(statName(layer, 'X')) : null,
    };
  }

  close(): void {
    this.st.close();
  }
}
