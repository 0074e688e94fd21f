import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../src/errors.ts';
import { contiguousWindows, sampleWindows } from '../src/data/windows.ts';

const ramp = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

/** Start offset of a window cut from ramp(): its first value. */
const starts = (ws: Int32Array[]) => ws.map((w) => w[0]);

test('sampleWindows: same seed same windows, different seed different windows', () => {
  const t = ramp(5000);
  const a = sampleWindows(t, 64, 128, 0);
  const b = sampleWindows(t, 64, 128, 0);
  const c = sampleWindows(t, 64, 128, 1);
  assert.deepEqual(starts(a), starts(b));
  assert.notDeepEqual(starts(a), starts(c));
  assert.equal(a.length, 64);
});

test('sampleWindows: windows are contiguous slices inside [0, L - seqlen - 1] and spread out', () => {
  const L = 1000;
  const seqlen = 100;
  const ws = sampleWindows(ramp(L), 4000, seqlen, 42);
  for (const w of ws) {
    assert.equal(w.length, seqlen);
    assert.ok(w[0] >= 0 && w[0] <= L - seqlen - 1, `start ${w[0]}`);
    for (let i = 1; i < seqlen; i++) assert.equal(w[i], w[0] + i);
  }
  // 4000 draws over 900 starts: both ends get hit and the mean is near the middle.
  const s = starts(ws);
  assert.equal(Math.min(...s), 0);
  assert.equal(Math.max(...s), L - seqlen - 1);
  const mean = s.reduce((x, y) => x + y, 0) / s.length;
  assert.ok(Math.abs(mean - (L - seqlen - 1) / 2) < 25, `mean start ${mean}`);
});

test('sampleWindows: the smallest stream that works has exactly one possible start', () => {
  const ws = sampleWindows(ramp(11), 5, 10, 7);
  assert.deepEqual(starts(ws), [0, 0, 0, 0, 0]);
  assert.throws(() => sampleWindows(ramp(10), 1, 10, 7), (e: unknown) => e instanceof InputError && /10 tokens.*at least 11/.test(e.message));
  assert.throws(() => sampleWindows(ramp(100), 0, 10, 7), InputError);
  assert.throws(() => sampleWindows(ramp(100), 2, 0, 7), InputError);
});

test('contiguousWindows: non-overlapping from the start, tail dropped, maxTokens honoured', () => {
  const ws = contiguousWindows(ramp(1050), 100);
  assert.equal(ws.length, 10);
  assert.deepEqual(starts(ws), [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
  assert.equal(ws[9][99], 999);
  assert.equal(contiguousWindows(ramp(1050), 100, 350).length, 3);
  assert.equal(contiguousWindows(ramp(1050), 100, 5000).length, 10);
  assert.equal(contiguousWindows(ramp(100), 100).length, 1);
  assert.throws(() => contiguousWindows(ramp(99), 100), (e: unknown) => e instanceof InputError && /99 tokens, fewer than one window of seqlen 100/.test(e.message));
  assert.throws(() => contiguousWindows(ramp(1000), 100, 50), (e: unknown) => e instanceof InputError && /limited to 50/.test(e.message));
  assert.throws(() => contiguousWindows(ramp(1000), 1.5), InputError);
});
