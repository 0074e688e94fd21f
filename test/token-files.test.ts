import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../src/errors.ts';
import { readBin, readNpy, readTokenFile } from '../src/data/token-files.ts';
import { loadTokens } from '../src/data/dataset.ts';

// Bytes written by NumPy 2.4.6 (np.save / np.lib.format.write_array), base64-encoded, so
// the reader is checked against the reference writer rather than against itself.
const NUMPY = {
  // np.array([0, 1, 65535, 300, 7], dtype='<u2')
  u2_1d: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPHUyJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDUsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAEA//8sAQcA',
  // np.array([[1, -2, 3], [40000, 5, 6]], dtype='<i4')
  i4_2d: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGk0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoBAAAA/v///wMAAABAnAAABQAAAAYAAAA=',
  // np.array([5, 2**31-1, 0, 123456], dtype='<i8'), format version 2.0
  i8_1d_v2: 'k05VTVBZAgB0AAAAeydkZXNjcic6ICc8aTgnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoNCwpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoFAAAAAAAAAP///38AAAAAAAAAAAAAAABA4gEAAAAAAA==',
  // np.array([1.5], dtype='<f4')
  f4: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDEsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAMA/',
  // np.zeros((2, 2, 2), dtype='<i4')
  i4_3d: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGk0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDIsIDIpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==',
  // np.array([2**40], dtype='<i8')
  i8_big: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGk4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDEsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAEAAA==',
  // np.array([1, 2], dtype='>i4')
  be: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPmk0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAABAAAAAg==',
};

const dir = mkdtempSync(join(tmpdir(), 'symprune-tokfiles-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Uint8Array | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}
const fromNumpy = (key: keyof typeof NUMPY) => write(`${key}.npy`, Buffer.from(NUMPY[key], 'base64'));

/** A .npy file built by hand from the format spec (version 1.0 header padded to 64 bytes). */
function handNpy(descr: string, shape: string, data: Uint8Array, opts: { fortran?: boolean } = {}): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': ${opts.fortran ? 'True' : 'False'}, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(pre);
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(data)]);
}

test('reads uint16, int32 (2-D, flattened in C order) and int64 (format v2) files written by NumPy', () => {
  assert.deepEqual(Array.from(readNpy(fromNumpy('u2_1d'))), [0, 1, 65535, 300, 7]);
  assert.deepEqual(Array.from(readNpy(fromNumpy('i4_2d'))), [1, -2, 3, 40000, 5, 6]);
  assert.deepEqual(Array.from(readNpy(fromNumpy('i8_1d_v2'))), [5, 2 ** 31 - 1, 0, 123456]);
  assert.ok(readNpy(fromNumpy('u2_1d')) instanceof Int32Array);
});

test('a hand-built header with other spacing and a file beside it via readTokenFile', () => {
  const data = new Uint8Array(new Uint16Array([9, 8, 7, 6]).buffer);
  const p = write('hand.npy', handNpy('<u2', '(2,2)', data));
  assert.deepEqual(Array.from(readTokenFile(p)), [9, 8, 7, 6]);
  // Fortran order is harmless for a 1-D array
  const q = write('hand-f.npy', handNpy('<u2', '(4,)', data, { fortran: true }));
  assert.deepEqual(Array.from(readTokenFile(q)), [9, 8, 7, 6]);
});

test('clear InputErrors for dtypes, shapes and damaged files', () => {
  const bad: [string, RegExp][] = [
    [fromNumpy('f4'), /unsupported \.npy dtype '<f4'/],
    [fromNumpy('i4_3d'), /3 dimensions/],
    [fromNumpy('i8_big'), /1099511627776 at position 0 does not fit in int32/],
    [fromNumpy('be'), /big-endian/],
    [write('nomagic.npy', Buffer.from('hello world, not numpy')), /bad magic/],
    [write('trunc.npy', Buffer.from(NUMPY.u2_1d, 'base64').subarray(0, 130)), /needs 10 data bytes but the file holds 2/],
    [write('hdr.npy', Buffer.from(NUMPY.u2_1d, 'base64').subarray(0, 40)), /truncated \.npy header/],
    [write('fortran2d.npy', handNpy('<i4', '(2, 2)', new Uint8Array(16), { fortran: true })), /Fortran-order/],
    [write('odd.bin', Buffer.from([1, 2, 3])), /not a whole number of uint16/],
    [join(dir, 'missing.npy'), /not found/],
  ];
  for (const [p, re] of bad) {
    assert.throws(() => readTokenFile(p), (e: unknown) => e instanceof InputError && re.test(e.message) && e.message.includes(p.split('/').pop()!.split('.')[0]), p);
  }
});

test('nanoGPT .bin: raw little-endian uint16', () => {
  const ids = [0, 50256, 12, 65535, 3];
  const bytes = Buffer.alloc(ids.length * 2);
  ids.forEach((v, i) => bytes.writeUInt16LE(v, 2 * i));
  const p = write('train.bin', bytes);
  assert.deepEqual(Array.from(readBin(p)), ids);
});

test('loadTokens reads .npy/.bin without a tokenizer and checks ids against the vocabulary', async () => {
  const p = fromNumpy('u2_1d');
  assert.deepEqual(Array.from(await loadTokens(p, {})), [0, 1, 65535, 300, 7]);
  await assert.rejects(loadTokens(p, { vocabSize: 1000 }), (e: unknown) => e instanceof InputError && /token id 65535 at position 2 .*size 1000/.test(e.message));
  await assert.rejects(loadTokens(fromNumpy('i4_2d'), { vocabSize: 50000 }), /token id -2 at position 1/);
  assert.equal((await loadTokens(p, { vocabSize: 65536 })).length, 5);
  await assert.rejects(loadTokens(join(dir, 'nope.bin'), {}), (e: unknown) => e instanceof InputError && /not found/.test(e.message));
  await assert.rejects(loadTokens(write('empty.bin', new Uint8Array(0)), {}), /holds no tokens/);
});
