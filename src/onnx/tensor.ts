/**
 * Conversions between ONNX TensorProto and typed arrays.
 * Only inline data is handled here; external data is resolved by model-io.ts
 * before these functions see a tensor.
 */
import { DataType, type TensorProto } from './proto.ts';

export type Dims = number[];

function dimsOf(t: TensorProto): Dims {
  return (t.dims ?? []).map((d) => Number(d));
}

export function numel(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Half-precision bits to float (IEEE 754 binary16). */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** Float to half-precision bits, round to nearest even. */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

function rawBytes(t: TensorProto): Uint8Array | null {
  return t.rawData && t.rawData.length > 0 ? t.rawData : null;
}

/** Read a FLOAT or FLOAT16 (or DOUBLE) tensor as Float32Array. */
export function tensorToFloat32(t: TensorProto): Float32Array {
  const n = numel(dimsOf(t));
  const raw = rawBytes(t);
  switch (t.dataType) {
    case DataType.FLOAT: {
      if (raw) {
        const out = new Float32Array(n);
        new Uint8Array(out.buffer).set(raw.subarray(0, n * 4));
        return out;
      }
      return Float32Array.from(t.floatData ?? []);
    }
    case DataType.FLOAT16: {
      const out = new Float32Array(n);
      if (raw) {
        const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
        for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      } else {
        // int32_data holds the raw 16-bit patterns.
        const d = t.int32Data ?? [];
        for (let i = 0; i < n; i++) out[i] = halfToFloat(d[i]! & 0xffff);
      }
      return out;
    }
    case DataType.DOUBLE: {
      if (raw) {
        const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
        return out;
      }
      return Float32Array.from(t.doubleData ?? []);
    }
    default:
      throw new Error(`tensor ${t.name ?? '?'}: data type ${t.dataType} is not a float type`);
  }
}

/** Bytes of a Float32Array encoded in the given float type (FLOAT or FLOAT16). */
export function float32ToBytes(data: Float32Array, dataType: number): Uint8Array {
  if (dataType === DataType.FLOAT) {
    return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  }
  if (dataType === DataType.FLOAT16) {
    const out = new Uint8Array(data.length * 2);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < data.length; i++) dv.setUint16(2 * i, floatToHalf(data[i]!), true);
    return out;
  }
  throw new Error(`cannot encode float data as ONNX data type ${dataType}`);
}

/** A FLOAT (or FLOAT16) initializer from a Float32Array, stored as raw bytes. */
export function floatTensor(name: string, dims: Dims, data: Float32Array, dataType: number = DataType.FLOAT): TensorProto {
  if (numel(dims) !== data.length) throw new Error(`tensor ${name}: ${data.length} values for dims [${dims}]`);
  return { name, dims, dataType, rawData: float32ToBytes(data, dataType) };
}

/** An INT64 tensor (shapes, axes, indices). */
export function int64Tensor(name: string, dims: Dims, values: ArrayLike<number>): TensorProto {
  const out = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i]!);
  return { name, dims, dataType: DataType.INT64, rawData: new Uint8Array(out.buffer) };
}

/** Read an INT64 or INT32 tensor as plain numbers. */
export function tensorToInts(t: TensorProto): number[] {
  const n = numel(dimsOf(t));
  const raw = rawBytes(t);
  if (t.dataType === DataType.INT64) {
    if (raw) {
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      return Array.from({ length: n }, (_, i) => Number(dv.getBigInt64(8 * i, true)));
    }
    return (t.int64Data ?? []).map((v) => Number(v));
  }
  if (t.dataType === DataType.INT32) {
    if (raw) {
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      return Array.from({ length: n }, (_, i) => dv.getInt32(4 * i, true));
    }
    return (t.int32Data ?? []).map(Number);
  }
  throw new Error(`tensor ${t.name ?? '?'}: data type ${t.dataType} is not an integer type`);
}

export function tensorDims(t: TensorProto): Dims {
  return dimsOf(t);
}

/** Cache-blocked transpose of a row-major [rows, cols] matrix into `out` ([cols, rows]). */
export function transposeInto(src: Float32Array, rows: number, cols: number, out: Float32Array = new Float32Array(rows * cols)): Float32Array {
  const T = 64;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = src[base + c]!;
      }
    }
  }
  return out;
}
