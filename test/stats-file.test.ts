import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LayerStatsFile, SafetensorsFile, writeSafetensors, writeStatsFile } from '../src/prune/stats-file.ts';
import { InputError } from '../src/errors.ts';
import { floatToHalf } from '../src/onnx/tensor.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-stats-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const layers = [
  { name: 'model.layers.0.self_attn.q_proj', out: 4, in: 3 },
  { name: 'model.layers.0.mlp.down_proj', out: 3, in: 5 },
];
const stats = new Map(layers.map((l, k) => [l.name, {
  G: Float32Array.from({ length: l.out * l.in }, (_, i) => i + 100 * k),
  X: Float32Array.from({ length: l.in }, (_, i) => 0.5 + i + k),
}]));

/** Hand-assembled safetensors bytes: the layout the format specifies, independent of the writer. */
function handMade(entries: Array<{ name: string; dtype: string; shape: number[]; bytes: Uint8Array }>): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.bytes.length] };
    off += e.bytes.length;
  }
  const hb = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  return Buffer.concat([len, hb, ...entries.map((e) => Buffer.from(e.bytes))]);
}

test('stats file round trip: L.G [out,in] and L.X [in], float32, 8-byte aligned header', () => {
  const file = path.join(tmp, 'a.safetensors');
  writeStatsFile(file, layers, (l) => stats.get(l.name)!, { model: 'tiny' });
  const bytes = fs.readFileSync(file);
  const hlen = Number(bytes.readBigUInt64LE(0));
  assert.equal((8 + hlen) % 8, 0);
  const header = JSON.parse(bytes.subarray(8, 8 + hlen).toString());
  assert.deepEqual(header['model.layers.0.self_attn.q_proj.G'], { dtype: 'F32', shape: [4, 3], data_offsets: [0, 48] });
  assert.deepEqual(header['model.layers.0.self_attn.q_proj.X'], { dtype: 'F32', shape: [3], data_offsets: [48, 60] });
  assert.equal(header.__metadata__.model, 'tiny');
  // first G value of layer 2 at its offset
  const off = header['model.layers.0.mlp.down_proj.G'].data_offsets[0];
  assert.equal(bytes.readFloatLE(8 + hlen + off + 4), 101);
  const f = LayerStatsFile.open(file, layers, { G: true, X: true });
  for (const l of layers) {
    const s = f.get(l.name);
    assert.deepEqual(s.G, stats.get(l.name)!.G);
    assert.deepEqual(s.X, stats.get(l.name)!.X);
  }
  f.close();
});

test('reads F16, BF16 and F64 tensors written by other tools', () => {
  const vals = [1, -2.5, 0.125];
  const f16 = new Uint8Array(6);
  const bf16 = new Uint8Array(6);
  const f64 = new Uint8Array(24);
  const dv = new DataView(f16.buffer);
  const db = new DataView(bf16.buffer);
  const dd = new DataView(f64.buffer);
  const tmpf = new Float32Array(1);
  const tmpu = new Uint32Array(tmpf.buffer);
  vals.forEach((v, i) => {
    dv.setUint16(2 * i, floatToHalf(v), true);
    tmpf[0] = v;
    db.setUint16(2 * i, tmpu[0]! >>> 16, true);
    dd.setFloat64(8 * i, v, true);
  });
  const file = path.join(tmp, 'mixed.safetensors');
  fs.writeFileSync(file, handMade([
    { name: 'a', dtype: 'F16', shape: [3], bytes: f16 },
    { name: 'b', dtype: 'BF16', shape: [1, 3], bytes: bf16 },
    { name: 'c', dtype: 'F64', shape: [3], bytes: f64 },
  ]));
  const st = SafetensorsFile.open(file);
  assert.equal(st.metadata.format, 'pt');
  for (const n of ['a', 'b', 'c']) assert.deepEqual(Array.from(st.read(n)), vals);
  st.close();
});

test('mismatched stats files are InputErrors naming the problem', () => {
  const file = path.join(tmp, 'b.safetensors');
  writeStatsFile(file, layers, (l) => stats.get(l.name)!);
  // wrong shape
  const other = [layers[0]!, { ...layers[1]!, in: 6 }];
  assert.throws(() => LayerStatsFile.open(file, other, { G: true, X: false }), (e: unknown) => e instanceof InputError && /down_proj\.G has shape \[3,5\], the model's layer is \[3, 6\]/.test(e.message));
  // unknown name
  const renamed = [layers[0]!, { ...layers[1]!, name: 'model.layers.0.mlp.up_proj' }];
  assert.throws(() => LayerStatsFile.open(file, renamed, { G: true, X: false }), (e: unknown) => e instanceof InputError && /down_proj\.G does not name a prunable layer/.test(e.message));
  // missing layer
  const more = [...layers, { name: 'model.layers.1.mlp.down_proj', out: 3, in: 5 }];
  assert.throws(() => LayerStatsFile.open(file, more, { G: true, X: false }), (e: unknown) => e instanceof InputError && /no G for 1 of 3 layers \(first: model\.layers\.1\.mlp\.down_proj\.G\)/.test(e.message));
  // G-only file: fine when only G is needed, error when X is needed
  const gOnly = path.join(tmp, 'g.safetensors');
  writeSafetensors(gOnly, layers.map((l) => ({ name: `${l.name}.G`, shape: [l.out, l.in] })), layers.map((l) => ({ name: `${l.name}.G`, shape: [l.out, l.in], data: stats.get(l.name)!.G })));
  const g = LayerStatsFile.open(gOnly, layers, { G: true, X: false });
  assert.deepEqual(g.has, { G: true, X: false });
  assert.equal(g.get(layers[0]!.name).X, null);
  g.close();
  assert.throws(() => LayerStatsFile.open(gOnly, layers, { G: false, X: true }), /no X for 2 of 2 layers/);
  // not a safetensors file; missing file
  const junk = path.join(tmp, 'junk.safetensors');
  fs.writeFileSync(junk, 'hello world, not safetensors');
  assert.throws(() => SafetensorsFile.open(junk), (e: unknown) => e instanceof InputError && /not a safetensors file/.test(e.message));
  assert.throws(() => SafetensorsFile.open(path.join(tmp, 'nope.safetensors')), (e: unknown) => e instanceof InputError && /cannot open \(ENOENT\)/.test(e.message));
});

test('a failed write leaves an existing file untouched and no temporary behind', () => {
  const file = path.join(tmp, 'keep.safetensors');
  fs.writeFileSync(file, 'original');
  assert.throws(() => writeStatsFile(file, layers, () => ({ G: null, X: null })));
  assert.equal(fs.readFileSync(file, 'utf8'), 'original');
  assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp')), []);
});
