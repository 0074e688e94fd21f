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
import { halfToFloat } from '../onnx/tensor.ts';
import { removeStaleTemps, tempPath } from '../files.ts';
import { statName, type LayerShape, type LayerStats, type StatsNeed } from './layer-stats.ts';

export interface SafetensorInfo {
  dtype: string;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

// F32 data is copied as bytes, which is only right on little-endian hosts (x86, arm).
if (os.endianness() !== 'LE') throw new Error('stats-file: big-endian hosts are not supported');

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

/** An open safetensors file: the parsed header, tensors read on demand. */
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
      check(size >= 8, `stats file ${file}: not a safetensors file (${size} bytes)`);
      const lenBuf = Buffer.alloc(8);
      fs.readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      check(headerLen > 1 && 8 + headerLen <= size && headerLen < 100_000_000, `stats file ${file}: not a safetensors file (bad header length)`);
      const hb = Buffer.alloc(headerLen);
      fs.readSync(fd, hb, 0, headerLen, 8);
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(hb.toString('utf8')) as Record<string, unknown>;
      } catch {
        throw new InputError(`stats file ${file}: not a safetensors file (header is not JSON)`);
      }
      const dataStart = 8 + headerLen;
      const tensors = new Map<string, SafetensorInfo>();
      let metadata: Record<string, string> = {};
      for (const [name, v] of Object.entries(header)) {
        if (name === '__metadata__') {
          metadata = (v ?? {}) as Record<string, string>;
          continue;
        }
        const t = v as { dtype?: string; shape?: number[]; data_offsets?: number[] };
        check(t && typeof t.dtype === 'string' && Array.isArray(t.shape) && Array.isArray(t.data_offsets), `stats file ${file}: tensor ${name} has a malformed header entry`);
        const bytes = DTYPE_BYTES[t.dtype];
        check(bytes !== undefined, `stats file ${file}: tensor ${name} has dtype ${t.dtype}; expected F32, F16, BF16 or F64`);
        const [b, e] = t.data_offsets as [number, number];
        const count = t.shape.reduce((a, d) => a * d, 1);
        check(e - b === count * bytes && dataStart + e <= size && b >= 0, `stats file ${file}: tensor ${name} data range does not match its shape [${t.shape}]`);
        tensors.set(name, { dtype: t.dtype, shape: t.shape.map(Number), begin: dataStart + b, end: dataStart + e });
      }
      return new SafetensorsFile(file, fd, tensors, metadata);
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
    const n = nbytes / DTYPE_BYTES[info.dtype]!;
    const out = new Float32Array(n);
    switch (info.dtype) {
      case 'F32':
        new Uint8Array(out.buffer).set(buf);
        break;
      case 'F64':
        for (let i = 0; i < n; i++) out[i] = buf.readDoubleLE(8 * i);
        break;
      case 'F16':
        for (let i = 0; i < n; i++) out[i] = halfToFloat(buf.readUInt16LE(2 * i));
        break;
      case 'BF16': {
        const u = new Uint32Array(1);
        const f = new Float32Array(u.buffer);
        for (let i = 0; i < n; i++) {
          u[0] = buf.readUInt16LE(2 * i) << 16;
          out[i] = f[0]!;
        }
        break;
      }
    }
    return out;
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
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const s of shapes) {
    const bytes = s.shape.reduce((a, d) => a * d, 1) * 4;
    header[s.name] = { dtype: 'F32', shape: s.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hb = Buffer.from(json, 'utf8');
  removeStaleTemps(file);
  const tmp = tempPath(file);
  const fd = fs.openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hb.length));
    fs.writeSync(fd, len);
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
 * Write `L.G` [out, in] and `L.X` [in] for every layer. `get` is called once per layer
 * in order, so statistics can be produced or loaded one layer at a time.
 */
export function writeStatsFile(file: string, layers: LayerShape[], get: (layer: LayerShape) => LayerStats, metadata: Record<string, string> = {}): void {
  const shapes: Array<{ name: string; shape: number[] }> = [];
  for (const l of layers) {
    shapes.push({ name: statName(l.name, 'G'), shape: [l.out, l.in] });
    shapes.push({ name: statName(l.name, 'X'), shape: [l.in] });
  }
  function* gen(): Generator<NamedTensor> {
    for (const l of layers) {
      const s = get(l);
      if (!s.G || !s.X) throw new Error(`writeStatsFile: layer ${l.name} lacks ${!s.G ? 'G' : 'X'}`);
      yield { name: statName(l.name, 'G'), shape: [l.out, l.in], data: s.G };
      yield { name: statName(l.name, 'X'), shape: [l.in], data: s.X };
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

  /** G and X of one layer (null for kinds the file does not hold). */
  get(layer: string): LayerStats {
    return {
      G: this.has.G ? this.st.read(statName(layer, 'G')) : null,
      X: this.has.X ? this.st.read(statName(layer, 'X')) : null,
    };
  }

  close(): void {
    this.st.close();
  }
}
