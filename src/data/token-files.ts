/**
 * Pre-tokenized corpora, so users can evaluate on exactly the ids their PyTorch pipeline
 * produced: NumPy `.npy` files (uint8/16/32, int16/32/64, little-endian, C order, 1-D or
 * 2-D read flattened; a 2-D array [n, seqlen] can also be read as n samples, see
 * readNpyRows) and nanoGPT's raw `.bin` files (bare little-endian uint16).
 * Files are read whole, so they must fit in one Buffer (2 GiB).
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { InputError } from '../errors.ts';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const ITEM: Record<string, { size: number; read: (v: DataView, o: number) => number | bigint }> = {
  u1: { size: 1, read: (v, o) => v.getUint8(o) },
  u2: { size: 2, read: (v, o) => v.getUint16(o, true) },
  i2: { size: 2, read: (v, o) => v.getInt16(o, true) },
  u4: { size: 4, read: (v, o) => v.getUint32(o, true) },
  i4: { size: 4, read: (v, o) => v.getInt32(o, true) },
  i8: { size: 8, read: (v, o) => v.getBigInt64(o, true) },
  u8: { size: 8, read: (v, o) => v.getBigUint64(o, true) },
};

function readWhole(path: string): Buffer {
  if (!existsSync(path)) throw new InputError(`token file not found: ${path}`);
  const st = statSync(path);
  if (st.isDirectory()) throw new InputError(`token file is a folder: ${path}`);
  if (st.size > 2 ** 31 - 1) throw new InputError(`${path} is ${st.size} bytes; token files over 2 GiB are not supported`);
  return readFileSync(path);
}

interface NpyHeader {
  dtype: string; // e.g. 'u2'
  shape: number[];
  dataOffset: number;
}

/** Parse the header of a .npy file (format versions 1, 2 and 3). */
export function parseNpyHeader(buf: Uint8Array, name = 'npy'): NpyHeader {
  if (buf.length < 10 || MAGIC.some((b, i) => buf[i] !== b)) throw new InputError(`${name} is not a .npy file (bad magic bytes)`);
  const major = buf[6];
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new InputError(`${name}: truncated .npy header`);
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    throw new InputError(`${name}: unsupported .npy format version ${major}.${buf[7]}`);
  }
  if (start + headerLen > buf.length) throw new InputError(`${name}: truncated .npy header`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(buf.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new InputError(`${name}: malformed .npy header ${JSON.stringify(header.trim())}`);
  }
  const m = /^([<>|=])([a-z])(\d+)$/.exec(descr);
  if (!m) throw new InputError(`${name}: unsupported .npy dtype '${descr}' (want integer ids: uint16, int32 or int64)`);
  const [, order, kind, bytes] = m;
  const dtype = `${kind}${bytes}`;
  if (!ITEM[dtype]) throw new InputError(`${name}: unsupported .npy dtype '${descr}' (want integer ids: uint16, int32 or int64)`);
  if (order === '>' && dtype !== 'u1') throw new InputError(`${name}: big-endian .npy data ('${descr}') is not supported; save it little-endian`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => Number(s.replace(/L$/, '')));
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new InputError(`${name}: bad .npy shape (${shapeText})`);
  if (shape.length < 1 || shape.length > 2) throw new InputError(`${name}: .npy array has ${shape.length} dimensions; want 1-D or 2-D token ids`);
  if (fortran === 'True' && shape.length === 2 && shape[0] > 1 && shape[1] > 1) {
    throw new InputError(`${name}: Fortran-order 2-D .npy arrays are not supported; save with C order`);
  }
  return { dtype, shape, dataOffset: start + headerLen };
}

function toInt32(view: DataView, offset: number, count: number, dtype: string, name: string): Int32Array {
  const item = ITEM[dtype];
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const v = item.read(view, offset + i * item.size);
    const n = typeof v === 'bigint' ? (v > 0x7fffffffn || v < -0x80000000n ? NaN : Number(v)) : v;
    if (!(n <= 0x7fffffff)) throw new InputError(`${name}: token id ${v} at position ${i} does not fit in int32`);
    out[i] = n;
  }
  return out;
}

/** Token ids of a .npy file, flattened in C order. */
export function readNpy(path: string): Int32Array {
  const buf = readWhole(path);
  const h = parseNpyHeader(buf, path);
  const count = h.shape.reduce((a, b) => a * b, 1);
  const bytes = count * ITEM[h.dtype].size;
  const have = buf.length - h.dataOffset;
  if (have !== bytes) {
    throw new InputError(`${path}: .npy shape (${h.shape.join(', ')}) needs ${bytes} data bytes but the file holds ${have}`);
  }
  return toInt32(new DataView(buf.buffer, buf.byteOffset, buf.byteLength), h.dataOffset, count, h.dtype, path);
}

/** The shape of a .npy file's array, from its header alone (a calibration file's samples may be large). */
export function npyShape(path: string): number[] {
  if (!existsSync(path)) throw new InputError(`token file not found: ${path}`);
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(Math.min(65536, fstatSync(fd).size));
    readSync(fd, head, 0, head.length, 0);
    return parseNpyHeader(head, path).shape;
  } finally {
    closeSync(fd);
  }
}

/** The rows of a 2-D .npy of token ids [n, seqlen], in order (views into one array). */
export function readNpyRows(path: string): Int32Array[] {
  const shape = npyShape(path);
  if (shape.length !== 2) throw new InputError(`${path}: a .npy of samples must be 2-D [n, seqlen] (got shape (${shape.join(', ')}))`);
  const [n, len] = shape as [number, number];
  const ids = readNpy(path);
  return Array.from({ length: n }, (_, i) => ids.subarray(i * len, (i + 1) * len));
}

/** Token ids of a nanoGPT-style .bin file (raw little-endian uint16). */
export function readBin(path: string): Int32Array {
  const buf = readWhole(path);
  if (buf.length % 2 !== 0) throw new InputError(`${path}: ${buf.length} bytes is not a whole number of uint16 token ids`);
  return toInt32(new DataView(buf.buffer, buf.byteOffset, buf.byteLength), 0, buf.length / 2, 'u2', path);
}

/** Read a .npy or .bin token file by its extension. */
export function readTokenFile(path: string): Int32Array {
  const ext = extname(path).toLowerCase();
  if (ext === '.npy') return readNpy(path);
  if (ext === '.bin') return readBin(path);
  throw new InputError(`${path}: token files must end in .npy or .bin`);
}
