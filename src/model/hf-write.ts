/**
 * Write a Hugging Face checkpoint folder: config.json, the weights as one
 * `model.safetensors` or as shards `model-0000i-of-0000n.safetensors` with
 * `model.safetensors.index.json`, plus any side files (tokenizer, generation config).
 *
 * Weights stream tensor by tensor (see safetensors.ts), so a checkpoint larger than
 * memory can be written from a lazy source. Every file is first written under a
 * temporary name; config.json, without which nothing loads, is removed first and put
 * back last, so an interrupted write never leaves a half checkpoint that loads.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DTYPE_BYTES, writeSafetensors, type FloatDtype, type TensorSource, type TensorSpec } from './safetensors.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** Files of a sharded checkpoint, named as transformers' save_pretrained names them. */
export function shardFileName(i: number, n: number): string {
  const pad = (k: number): string => String(k).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

export interface ShardLayout {
  file: string;
  names: string[];
}

export interface HfWriteOptions {
  /** dtype of tensors whose spec gives none; default BF16. */
  dtype?: FloatDtype;
  /** Start a new shard before a tensor that would take the current one past this; default 5 GB (save_pretrained's default). */
  maxShardBytes?: number;
  /** An explicit layout (file name -> tensor names), e.g. the input's; overrides maxShardBytes. */
  layout?: ShardLayout[];
  /** Files copied into the folder as they are (destination name -> source path). */
  copyFiles?: Record<string, string>;
  /** JSON files written into the folder (name -> value). */
  jsonFiles?: Record<string, unknown>;
}

function bytesOf(s: { shape: number[]; dtype: FloatDtype }): number {
  return s.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[s.dtype]!;
}

/** Group tensors into shards in order, as save_pretrained does (a tensor never splits). */
export function planShards(specs: readonly TensorSpec[], maxShardBytes: number): ShardLayout[] {
  const groups: string[][] = [];
  let cur: string[] = [];
  let size = 0;
  for (const s of specs) {
    const b = bytesOf(s);
    if (cur.length > 0 && size + b > maxShardBytes) {
      groups.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(s.name);
    size += b;
  }
  if (cur.length > 0) groups.push(cur);
  if (groups.length <= 1) return [{ file: SINGLE_FILE, names: groups[0] ?? [] }];
  return groups.map((names, i) => ({ file: shardFileName(i, groups.length), names }));
}

/**
 * Write a checkpoint into `dir` (created if needed). `tensors` lists every tensor in
 * file order with its PyTorch shape (and dtype; default opts.dtype); `source(name)` is
 * called once per tensor when it is written. `config` is written as config.json.
 */
export async function writeHfCheckpoint(
  dir: string,
  config: Record<string, unknown>,
  tensors: ReadonlyArray<{ name: string; shape: number[]; dtype?: FloatDtype }>,
  source: TensorSource,
  opts: HfWriteOptions = {},
): Promise<{ files: string[]; totalBytes: number }> {
  const specs: TensorSpec[] = tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype ?? opts.dtype ?? 'BF16' }));
  const byName = new Map(specs.map((s) => [s.name, s]));
  const layout = opts.layout ?? planShards(specs, opts.maxShardBytes ?? 5e9);
  const laidOut = new Set(layout.flatMap((l) => l.names));
  for (const s of specs) if (!laidOut.has(s.name)) throw new Error(`writeHfCheckpoint: tensor ${s.name} is in no shard`);
  for (const n of laidOut) if (!byName.has(n)) throw new Error(`writeHfCheckpoint: shard layout names unknown tensor ${n}`);

  await fsp.mkdir(dir, { recursive: true });
  const tag = `.tmp-${process.pid}-${Date.now()}`;
  const pending: Array<[string, string]> = [];
  const stage = (name: string): string => {
    const final = path.join(dir, name);
    pending.push([final + tag, final]);
    return final + tag;
  };
  let totalBytes = 0;
  try {
    for (const shard of layout) {
      const shardSpecs = shard.names.map((n) => byName.get(n)!);
      await writeSafetensors(stage(shard.file), shardSpecs, source, { format: 'pt' });
      totalBytes += shardSpecs.reduce((a, s) => a + bytesOf(s), 0);
    }
    if (layout.length > 1 || layout[0]!.file !== SINGLE_FILE) {
      const weightMap: Record<string, string> = {};
      for (const shard of layout) for (const n of shard.names) weightMap[n] = shard.file;
      await fsp.writeFile(stage(INDEX_FILE), JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2) + '\n');
    }
    for (const [name, src] of Object.entries(opts.copyFiles ?? {})) await fsp.copyFile(src, stage(name));
    for (const [name, value] of Object.entries(opts.jsonFiles ?? {})) await fsp.writeFile(stage(name), JSON.stringify(value, null, 2) + '\n');
    await fsp.writeFile(stage('config.json'), JSON.stringify(config, null, 2) + '\n');
    // Without config.json nothing loads: drop an old one before the new weights land.
    await fsp.rm(path.join(dir, 'config.json'), { force: true });
    for (const [tmp, final] of pending) await fsp.rename(tmp, final);
  } catch (e) {
    for (const [tmp] of pending) await fsp.rm(tmp, { force: true });
    throw e;
  }
  return { files: pending.map(([, f]) => f), totalBytes };
}
