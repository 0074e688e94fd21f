/**
 * The weights of a Hugging Face folder by PyTorch name, wherever they live: one
 * `model.safetensors`, or shards listed by `model.safetensors.index.json`. Headers of
 * every file are read and checked up front (a missing shard or a header past the end
 * of its file fails before any work); tensor data is read on demand, one tensor at a
 * time, through the owning file's handle.
 */
import fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors.ts';
import { INDEX_FILE, SINGLE_FILE, type ShardLayout } from './hf-write.ts';
import { SafetensorsReader, type TensorEntry } from './safetensors.ts';

export interface HfWeights {
  dir: string;
  /** Files in order with the tensor names each holds (in header order). */
  layout: ShardLayout[];
  /** Whether the folder is sharded (has an index). */
  sharded: boolean;
  has(name: string): boolean;
  entry(name: string): TensorEntry;
  readFloat32(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

/** The weight files of a folder, or null when it holds none. */
export function hfWeightFiles(dir: string): { sharded: boolean; files: string[]; weightMap?: Record<string, string> } | null {
  const index = path.join(dir, INDEX_FILE);
  if (fs.existsSync(index)) {
    let json: { weight_map?: Record<string, string> };
    try {
      json = JSON.parse(fs.readFileSync(index, 'utf8'));
    } catch (e) {
      throw new InputError(`${index}: not valid JSON (${(e as Error).message})`);
    }
    const wm = json.weight_map;
    if (!wm || typeof wm !== 'object') throw new InputError(`${index}: no weight_map`);
    const files = [...new Set(Object.values(wm))];
    for (const f of files) {
      if (typeof f !== 'string' || f.includes('/') || f.includes('\\')) throw new InputError(`${index}: bad shard file name ${JSON.stringify(f)}`);
      if (!fs.existsSync(path.join(dir, f))) throw new InputError(`${dir}: shard ${f} listed in ${INDEX_FILE} is missing`);
    }
    return { sharded: true, files, weightMap: wm };
  }
  if (fs.existsSync(path.join(dir, SINGLE_FILE))) return { sharded: false, files: [SINGLE_FILE] };
  return null;
}

/** Open a folder's weights (headers validated); close() releases the file handles. */
export async function openHfWeights(dir: string): Promise<HfWeights> {
  const found = hfWeightFiles(dir);
  if (!found) throw new InputError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`);
  const readers = new Map<string, SafetensorsReader>();
  const owner = new Map<string, SafetensorsReader>();
  const close = async (): Promise<void> => {
    for (const r of readers.values()) await r.close();
  };
  try {
    for (const f of found.files) {
      const r = await SafetensorsReader.open(path.join(dir, f));
      readers.set(f, r);
      for (const name of r.header.tensors.keys()) owner.set(name, r);
    }
    if (found.weightMap) {
      for (const [name, f] of Object.entries(found.weightMap)) {
        if (!readers.get(f)!.header.tensors.has(name)) throw new InputError(`${dir}: ${INDEX_FILE} places ${name} in ${f}, which does not hold it`);
      }
    }
  } catch (e) {
    await close();
    throw e;
  }
  // Data order, not JSON key order: the reference writer's header order is arbitrary.
  const layout = found.files.map((file) => {
    const t = readers.get(file)!.header.tensors;
    return { file, names: [...t.keys()].sort((a, b) => t.get(a)!.begin - t.get(b)!.begin) };
  });
  const get = (name: string): SafetensorsReader => {
    const r = owner.get(name);
    if (!r) throw new InputError(`${dir}: the checkpoint has no tensor ${name}`);
    return r;
  };
  return {
    dir,
    layout,
    sharded: found.sharded,
    has: (name) => owner.has(name),
    entry: (name) => get(name).entry(name),
    readFloat32: (name) => get(name).readFloat32(name),
    close,
  };
}
