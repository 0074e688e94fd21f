import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SafetensorsReader, floatToBf16, readSafetensorsHeader, writeSafetensors } from '../src/model/safetensors.ts';
import { writeHfCheckpoint, planShards } from '../src/model/hf-write.ts';
import { openHfWeights } from '../src/model/hf-weights.ts';
import { InputError } from '../src/errors.ts';

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'symprune-st-'));

/** Parse a safetensors file by hand, as the format's spec reads (independent of the reader). */
function parseByHand(file: string): { header: Record<string, any>; data: Buffer } {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

test('bf16 rounding is round-to-nearest-even, as torch converts', () => {
  assert.equal(floatToBf16(1), 0x3f80);
  assert.equal(floatToBf16(-2), 0xc000);
  // 1 + 2^-8 is exactly half-way between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  assert.equal(floatToBf16(1 + 2 ** -8), 0x3f80);
  // 1 + 3·2^-8 is half-way between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  assert.equal(floatToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(floatToBf16(1 + 2 ** -8 + 2 ** -12), 0x3f81);
});

test('safetensors: written bytes follow the format; F32/F16/BF16 read back', async () => {
  const dir = tmp();
  const file = path.join(dir, 'a.safetensors');
  const a = Float32Array.from([1, -2, 0.5, 3.25, 100, -0.125]);
  const b = Float32Array.from([1.5, 2.75, -1024]);
  const c = Float32Array.from([0.1, 0.2]);
  await writeSafetensors(file, [
    { name: 'a', shape: [2, 3], dtype: 'F32' },
    { name: 'b', shape: [3], dtype: 'F16' },
    { name: 'c', shape: [1, 2], dtype: 'BF16' },
  ], (n) => ({ a, b, c })[n]!);
  const { header, data } = parseByHand(file);
  assert.deepEqual(header.a, { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
  assert.deepEqual(header.b, { dtype: 'F16', shape: [3], data_offsets: [24, 30] });
  assert.deepEqual(header.c, { dtype: 'BF16', shape: [1, 2], data_offsets: [30, 34] });
  assert.equal(header.__metadata__.format, 'pt');
  assert.equal(data.length, 34);
  assert.equal((fs.statSync(file).size - data.length) % 8, 0, 'data starts 8-byte aligned');
  assert.equal(data.readFloatLE(4), -2);
  assert.equal(data.readUInt16LE(24), 0x3e00); // 1.5 in f16
  assert.equal(data.readUInt16LE(30), 0x3dcd); // 0.1 in bf16 (0x3dcccccd rounded)

  const r = await SafetensorsReader.open(file);
  assert.deepEqual(await r.readFloat32('a'), a);
  assert.deepEqual(await r.readFloat32('b'), b);
  const cc = await r.readFloat32('c');
  assert.ok(Math.abs(cc[0]! - 0.1) < 1e-3 && Math.abs(cc[1]! - 0.2) < 1e-3);
  await r.close();
});

test('safetensors: headers pointing past the end of the file are InputErrors', async () => {
  const dir = tmp();
  const file = path.join(dir, 'x.safetensors');
  await writeSafetensors(file, [{ name: 'w', shape: [4, 4], dtype: 'F32' }], () => new Float32Array(16));
  const whole = fs.readFileSync(file);
  // Truncated data: the tensor's end offset lies past the end.
  fs.writeFileSync(file, whole.subarray(0, whole.length - 4));
  await assert.rejects(readSafetensorsHeader(file), (e: Error) => e instanceof InputError && /points past the end of the file/.test(e.message));
  // A header length larger than the file.
  const big = Buffer.from(whole);
  big.writeBigUInt64LE(10n ** 6n, 0);
  fs.writeFileSync(file, big);
  await assert.rejects(readSafetensorsHeader(file), (e: Error) => e instanceof InputError && /not a safetensors file \(header length 1000000 points past the end of the file/.test(e.message));
  // Offsets that disagree with dtype and shape.
  fs.writeFileSync(file, Buffer.concat([Buffer.from([14, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"w":{"dtype":'), Buffer.alloc(4)]));
  await assert.rejects(readSafetensorsHeader(file), InputError);
});

test('HF checkpoint: shards planned by size, index written, read back by name', async () => {
  const dir = tmp();
  const tensors = [
    { name: 'model.embed_tokens.weight', shape: [8, 4] },
    { name: 'model.layers.0.mlp.up_proj.weight', shape: [6, 4] },
    { name: 'model.norm.weight', shape: [4] },
  ];
  const values = new Map(tensors.map((t, k) => [t.name, Float32Array.from({ length: t.shape.reduce((a, b) => a * b, 1) }, (_, i) => (i - 3) * (k + 1) * 0.25)]));
  const produced: string[] = [];
  const source = (n: string): Float32Array => {
    produced.push(n);
    return values.get(n)!;
  };
  // 64 + 48 bytes in bf16 > 100: the first shard closes after the embedding.
  const out = await writeHfCheckpoint(dir, { model_type: 'llama' }, tensors, source, { dtype: 'BF16', maxShardBytes: 100, jsonFiles: { 'prune.json': { ok: 1 } } });
  assert.deepEqual(produced, tensors.map((t) => t.name), 'each tensor produced once, in order');
  assert.equal(out.totalBytes, (32 + 24 + 4) * 2);
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
  assert.deepEqual(index.weight_map, {
    'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
    'model.layers.0.mlp.up_proj.weight': 'model-00002-of-00002.safetensors',
    'model.norm.weight': 'model-00002-of-00002.safetensors',
  });
  assert.equal(index.metadata.total_size, 120);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), { model_type: 'llama' });
  assert.ok(fs.existsSync(path.join(dir, 'prune.json')));
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'no temporary files left');

  const w = await openHfWeights(dir);
  assert.equal(w.sharded, true);
  assert.deepEqual(w.layout.map((l) => l.names), [['model.embed_tokens.weight'], ['model.layers.0.mlp.up_proj.weight', 'model.norm.weight']]);
  for (const [n, v] of values) assert.deepEqual(await w.readFloat32(n), v, n); // multiples of 0.25 are exact in bf16
  assert.equal(w.entry('model.norm.weight').dtype, 'BF16');
  await w.close();

  // A missing shard is named.
  fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
  await assert.rejects(openHfWeights(dir), (e: Error) => e instanceof InputError && /shard model-00002-of-00002.safetensors .* is missing/.test(e.message));
});

test('HF checkpoint: one shard is a plain model.safetensors without an index', () => {
  const plan = planShards([{ name: 'a', shape: [2], dtype: 'F32' }, { name: 'b', shape: [2], dtype: 'F32' }], 1e9);
  assert.deepEqual(plan, [{ file: 'model.safetensors', names: ['a', 'b'] }]);
});

test('HF checkpoint: a failing source leaves the folder as it was (old config, no temporary files)', async () => {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'config.json'), '{"old":true}');
  await assert.rejects(
    writeHfCheckpoint(dir, { model_type: 'llama' }, [{ name: 'a', shape: [2] }, { name: 'b', shape: [2] }], (n) => {
      if (n === 'b') throw new Error('interrupted');
      return new Float32Array(2);
    }),
    /interrupted/,
  );
  assert.deepEqual(fs.readdirSync(dir), ['config.json']);
  assert.equal(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'), '{"old":true}', 'the old checkpoint is untouched');
});

test('safetensors: the header is padded to 8 bytes, not 8 characters (non-ASCII names)', async () => {
  const file = path.join(tmp(), 'u.safetensors');
  await writeSafetensors(file, [{ name: 'poids.é', shape: [1], dtype: 'F32' }], () => Float32Array.of(2.5));
  const n = Number(fs.readFileSync(file).readBigUInt64LE(0));
  assert.equal(n % 8, 0);
  const r = await SafetensorsReader.open(file);
  assert.deepEqual(await r.readFloat32('poids.é'), Float32Array.of(2.5));
  await r.close();
});
