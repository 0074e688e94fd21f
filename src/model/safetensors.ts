/**
 * The safetensors format (Hugging Face's weight files): an 8-byte little-endian header
 * length, a JSON header `{name: {dtype, shape, data_offsets: [start, end]}, __metadata__}`,
 * then the raw little-endian tensor bytes, offsets relative to the end of the header.
 *
 * Reading goes tensor by tensor through a file handle (a 7 B checkpoint's shards are
 * several GB; Node 20 caps one Buffer at 4 GiB), and the header is checked against the
 * file's size before any tensor is read, so a truncated or corrupt file fails with one
 * clear line instead of a short read deep inside a forward pass. Writing streams too:
 * the header is computed from the tensors' specs, then each tensor is produced, encoded
 * and written in turn, so only one tensor is in memory at a time.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import { InputError } from '../errors.ts';
import { readAt, writeAll } from '../onnx/model-io.ts';
import { floatToHalf, halfToFloat } from '../onnx/tensor.ts';

/** The float dtypes symprune reads and writes. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';
export const FLOAT_DTYPES: readonly FloatDtype[] = ['F32', 'F16', 'BF16'];
export const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface TensorEntry {
  dtype: string;
  shape: number[];
  /** Absolute byte range of the data in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  /** Tensors in header order. */
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

/** Largest header we accept (the reference implementation's limit is 100 MB). */
const MAX_HEADER = 100_000_000;

function isShape(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);
}

/**
 * The header's byte length from a file's first 8 bytes, checked against the file's size
 * (sync and async readers share it; both then call parseSafetensorsHeader).
 */
export function safetensorsHeaderLength(first8: Uint8Array, file: string, size: number): number {
  if (size < 8 || first8.length < 8) throw new InputError(`${file}: not a safetensors file (${size} bytes)`);
  const headerLen = Number(new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true));
  if (headerLen < 2 || headerLen > MAX_HEADER || 8 + headerLen > size) {
    throw new InputError(`${file}: not a safetensors file (header length ${headerLen} points past the end of the file, ${size} bytes)`);
  }
  return headerLen;
}

/** Parse and validate a header (the bytes after the length) of a file of `size` bytes. */
export function parseSafetensorsHeader(headerBytes: Uint8Array, file: string, size: number): SafetensorsHeader {
  const headerLen = headerBytes.length;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch (e) {
    throw new InputError(`${file}: not a safetensors file (header is not JSON: ${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InputError(`${file}: safetensors header is not a JSON object`);
  const dataStart = 8 + headerLen;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (v ?? {}) as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const bytes = typeof e?.dtype === 'string' ? DTYPE_BYTES[e.dtype] : undefined;
    if (bytes === undefined) throw new InputError(`${file}: tensor ${name} has unsupported dtype ${JSON.stringify(e?.dtype)}`);
    if (!isShape(e.shape)) throw new InputError(`${file}: tensor ${name} has a bad shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!isShape(off) || off.length !== 2 || off[1]! < off[0]!) throw new InputError(`${file}: tensor ${name} has bad data_offsets ${JSON.stringify(off)}`);
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (off[1]! - off[0]! !== n * bytes) {
      throw new InputError(`${file}: tensor ${name} spans ${off[1]! - off[0]!} bytes, but ${e.dtype} [${e.shape.join(', ')}] needs ${n * bytes}`);
    }
    const begin = dataStart + off[0]!;
    const end = dataStart + off[1]!;
    if (end > size) throw new InputError(`${file}: tensor ${name} points past the end of the file (byte ${end} of ${size})`);
    tensors.set(name, { dtype: e.dtype as string, shape: e.shape, begin, end });
  }
  return { file, tensors, metadata };
}

async function readHeaderFrom(fh: fsp.FileHandle, file: string, size: number): Promise<SafetensorsHeader> {
  const headerLen = safetensorsHeaderLength(size >= 8 ? await readAt(fh, 0, 8) : new Uint8Array(0), file, size);
  return parseSafetensorsHeader(await readAt(fh, 8, headerLen), file, size);
}

/** Read only the header of a safetensors file (no tensor data). */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const r = await SafetensorsReader.open(file);
  await r.close();
  return r.header;
}

// Typed-array views read the host's byte order; safetensors is little-endian.
if (os.endianness() !== 'LE') throw new Error('safetensors: big-endian hosts are not supported');

/** 16-bit words of raw bytes (a view when aligned; typed arrays are ~10x faster than DataView here). */
function words16(raw: Uint8Array, n: number): Uint16Array {
  return raw.byteOffset % 2 === 0 ? new Uint16Array(raw.buffer, raw.byteOffset, n) : new Uint16Array(raw.slice(0, 2 * n).buffer);
}

let halfTable: Float32Array | null = null;
/** Every float16 bit pattern's value, computed once (a lookup beats decoding per element). */
function halves(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/** Decode little-endian raw bytes of a float dtype into a Float32Array. */
export function decodeFloats(raw: Uint8Array, dtype: string, n: number): Float32Array {
  const out = new Float32Array(n);
  if (dtype === 'F32') new Uint8Array(out.buffer).set(raw.subarray(0, n * 4));
  else if (dtype === 'BF16') {
    // bf16 bits are the top half of an f32's.
    const w = words16(raw, n);
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = w[i]! << 16;
  } else if (dtype === 'F16') {
    const w = words16(raw, n);
    const t = halves();
    for (let i = 0; i < n; i++) out[i] = t[w[i]!]!;
  } else if (dtype === 'F64') {
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
  } else throw new InputError(`cannot read ${dtype} tensor data as float`);
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** Float to bfloat16 bits, round to nearest even (as torch's .to(torch.bfloat16)). */
export function floatToBf16(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Encode floats as little-endian bytes of a float dtype. */
export function encodeFloats(data: Float32Array, dtype: FloatDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint16Array(data.length);
  if (dtype === 'F16') for (let i = 0; i < data.length; i++) out[i] = floatToHalf(data[i]!);
  else {
    const u = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < data.length; i++) {
      const x = u[i]!;
      // Round to nearest even; NaN stays a (quiet) NaN.
      out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return new Uint8Array(out.buffer);
}

/** An open safetensors file: a validated header and per-tensor reads. Close it when done. */
export class SafetensorsReader {
  private constructor(
    private fh: fsp.FileHandle,
    readonly header: SafetensorsHeader,
  ) {}

  static async open(file: string): Promise<SafetensorsReader> {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch {
      throw new InputError(`safetensors file not found: ${file}`);
    }
    try {
      const { size } = await fh.stat();
      return new SafetensorsReader(fh, await readHeaderFrom(fh, file, size));
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  entry(name: string): TensorEntry {
    const e = this.header.tensors.get(name);
    if (!e) throw new InputError(`${this.header.file}: no tensor ${name}`);
    return e;
  }

  /** The tensor's bytes as stored. */
  async readRaw(name: string): Promise<Uint8Array> {
    const e = this.entry(name);
    return readAt(this.fh, e.begin, e.end - e.begin);
  }

  /** The tensor as float32 (f16/bf16 widened while reading). */
  async readFloat32(name: string): Promise<Float32Array> {
    const e = this.entry(name);
    return decodeFloats(await this.readRaw(name), e.dtype, e.shape.reduce((a, b) => a * b, 1));
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** What a writer needs to know of a tensor before its data exists. */
export interface TensorSpec {
  name: string;
  shape: number[];
  dtype: FloatDtype;
}

/** Produces a tensor's values when the writer reaches it (may read from disk, prune, ...). */
export type TensorSource = (name: string) => Float32Array | Promise<Float32Array>;

function specBytes(s: TensorSpec): number {
  return s.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[s.dtype]!;
}

/** The header bytes (length prefix included) for tensors laid out in the given order. */
export function encodeHeader(specs: readonly TensorSpec[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const obj: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const s of specs) {
    const n = specBytes(s);
    obj[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [off, off + n] };
    off += n;
  }
  const raw = new TextEncoder().encode(JSON.stringify(obj));
  // The reference writer pads the header with spaces to a multiple of 8 (bytes) so data is aligned.
  const body = new Uint8Array(raw.length + ((8 - (raw.length % 8)) % 8)).fill(0x20);
  body.set(raw);
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  return out;
}

/**
 * Write one safetensors file at `file` (exactly that path; callers wanting atomicity
 * write to a temporary name and rename). Tensors are produced one at a time by `source`
 * and written in `specs` order.
 */
export async function writeSafetensors(file: string, specs: readonly TensorSpec[], source: TensorSource, metadata?: Record<string, string>): Promise<number> {
  const header = encodeHeader(specs, metadata);
  const fh = await fsp.open(file, 'w');
  let pos = 0;
  try {
    await writeAll(fh, header, 0);
    pos = header.length;
    for (const s of specs) {
      const data = await source(s.name);
      const n = s.shape.reduce((a, b) => a * b, 1);
      if (data.length !== n) throw new Error(`writeSafetensors: ${s.name} has ${data.length} values, shape [${s.shape.join(', ')}] needs ${n}`);
      const bytes = encodeFloats(data, s.dtype);
      await writeAll(fh, bytes, pos);
      pos += bytes.length;
    }
  } finally {
    await fh.close();
  }
  return pos;
}
