/**
 * Training checkpoints: weights, both Adam moments, the step, tokens seen and the batch
 * sampler's RNG state, so a resumed run continues exactly where it stopped. The tensors
 * go to `checkpoint-<step>.bin` (float32, little-endian, name order given in the JSON);
 * `checkpoint.json` is renamed into place last and names the .bin it belongs to, so a
 * crash mid-save leaves the previous checkpoint intact.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';

export interface CheckpointMeta {
  version: 1;
  configHash: string;
  step: number;
  tokensSeen: number;
  elapsedSeconds: number;
  /** seedrandom state of the batch sampler */
  rngState: unknown;
  /** tensor names in file order, with element counts */
  tensors: Array<{ name: string; numel: number }>;
  /** free-form run history carried across resumes (losses, evaluations) */
  history: unknown;
  binFile?: string;
}

export interface CheckpointTensors {
  params: Map<string, Float32Array>;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export const CHECKPOINT_JSON = 'checkpoint.json';

export function hasCheckpoint(dir: string): boolean {
  return existsSync(join(dir, CHECKPOINT_JSON));
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function saveCheckpoint(dir: string, meta: Omit<CheckpointMeta, 'binFile' | 'tensors' | 'version'>, t: CheckpointTensors): void {
  mkdirSync(dir, { recursive: true });
  const names = [...t.params.keys()];
  const binFile = `checkpoint-${meta.step}.bin`;
  const tmpBin = join(dir, `${binFile}.tmp`);
  const fd = openSync(tmpBin, 'w');
  try {
    for (const kind of [t.params, t.m, t.v]) for (const n of names) writeSync(fd, bytesOf(kind.get(n)!));
  } finally {
    closeSync(fd);
  }
  renameSync(tmpBin, join(dir, binFile));
  let previous: string | undefined;
  if (hasCheckpoint(dir)) {
    try {
      previous = (JSON.parse(readFileSync(join(dir, CHECKPOINT_JSON), 'utf8')) as CheckpointMeta).binFile;
    } catch {
      previous = undefined;
    }
  }
  const full: CheckpointMeta = { version: 1, ...meta, tensors: names.map((n) => ({ name: n, numel: t.params.get(n)!.length })), binFile };
  const tmpJson = join(dir, `${CHECKPOINT_JSON}.tmp`);
  writeFileSync(tmpJson, JSON.stringify(full));
  renameSync(tmpJson, join(dir, CHECKPOINT_JSON));
  if (previous && previous !== binFile && existsSync(join(dir, previous))) unlinkSync(join(dir, previous));
}

export function loadCheckpoint(dir: string): { meta: CheckpointMeta } & CheckpointTensors {
  const jsonPath = join(dir, CHECKPOINT_JSON);
  if (!existsSync(jsonPath)) throw new InputError(`no checkpoint to resume from in ${dir}`);
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(readFileSync(jsonPath, 'utf8')) as CheckpointMeta;
  } catch (e) {
    throw new InputError(`${jsonPath} is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (meta.version !== 1 || !meta.binFile || !Array.isArray(meta.tensors)) throw new InputError(`${jsonPath} is not a symprune checkpoint`);
  const binPath = join(dir, meta.binFile);
  if (!existsSync(binPath)) throw new InputError(`checkpoint data ${binPath} is missing`);
  const buf = readFileSync(binPath);
  const total = meta.tensors.reduce((a, t) => a + t.numel, 0);
  if (buf.byteLength !== 3 * 4 * total) throw new InputError(`checkpoint data ${binPath} has ${buf.byteLength} bytes, expected ${3 * 4 * total}`);
  const out: CheckpointTensors = { params: new Map(), m: new Map(), v: new Map() };
  let off = 0;
  for (const kind of [out.params, out.m, out.v]) {
    for (const t of meta.tensors) {
      const a = new Float32Array(t.numel);
      new Uint8Array(a.buffer).set(buf.subarray(off, off + 4 * t.numel));
      off += 4 * t.numel;
      kind.set(t.name, a);
    }
  }
  return { meta, ...out };
}
