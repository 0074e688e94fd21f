/**
 * Reading and writing ONNX model files, external data included.
 *
 * Models over the 2 GB protobuf limit keep their tensors in a data file beside the
 * model (TensorProto.data_location = EXTERNAL with `location`/`offset`/`length`
 * entries), as Hugging Face optimum and onnx.save_model(save_as_external_data=True)
 * write them. Both directions go tensor by tensor through a file handle: Node 20
 * caps a Buffer at 4 GiB, so a data file is never held in one piece.
 */
import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors.ts';
import { allTensors } from './graph-edit.ts';
import { decodeModel, encodeModel, onnx, type ModelProto, type TensorProto } from './proto.ts';
import { removeStaleTemps } from '../files.ts';

const EXTERNAL = onnx.TensorProto.DataLocation.EXTERNAL;
/** Largest single read/write through a file handle (Node limits one call to < 2 GiB). */
const IO_CHUNK = 1 << 30;
/** Default total weight size above which 'auto' writes external data (the proto limit is 2 GiB). */
export const EXTERNAL_DATA_THRESHOLD = 1.8e9;
/** Tensors smaller than this stay inline (onnx's size_threshold default). */
const MIN_EXTERNAL_BYTES = 1024;
/** onnx >= 1.17 aligns large external tensors to the allocation granularity so they can be memory-mapped. */
const ALIGN_THRESHOLD = 1 << 20;
const ALIGNMENT = 65536;

async function statOrNull(p: string): Promise<Stats | null> {
  try {
    return await fsp.stat(p);
  } catch {
    return null;
  }
}

export function externalEntries(t: TensorProto): { location: string; offset: number; length?: number } {
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  if (!location) throw new InputError(`tensor ${t.name}: external data without a location`);
  const offset = kv.has('offset') ? Number(kv.get('offset')) : 0;
  const length = kv.has('length') ? Number(kv.get('length')) : undefined;
  if (!Number.isSafeInteger(offset) || offset < 0 || (length !== undefined && (!Number.isSafeInteger(length) || length < 0))) {
    throw new InputError(`tensor ${t.name}: bad external data offset/length (${kv.get('offset')}/${kv.get('length')})`);
  }
  return { location, offset, length };
}

/** Read `length` bytes at `offset` through a file handle, in chunks. */
export async function readAt(fh: fsp.FileHandle, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, Math.min(IO_CHUNK, length - done), offset + done);
    if (bytesRead === 0) throw new Error('unexpected end of file');
    done += bytesRead;
  }
  return out;
}

export async function writeAll(fh: fsp.FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, Math.min(IO_CHUNK, data.length - done), position + done);
    done += bytesWritten;
  }
}

/**
 * Load an ONNX model; tensors stored as external data are read into rawData, so the
 * returned model is self-contained. Throws InputError for a missing or non-ONNX file.
 */
export async function loadModel(file: string): Promise<ModelProto> {
  const model = await readModelFile(file);
  await resolveExternalData(model, path.dirname(path.resolve(file)));
  return model;
}

/** The model's graph with external data left unresolved (a large model's weights stay on disk). */
export async function readModelFile(file: string): Promise<ModelProto> {
  const st = await statOrNull(file);
  if (!st) throw new InputError(`model file not found: ${file}`);
  if (!st.isFile()) throw new InputError(`model path is not a file: ${file}`);
  if (st.size >= 2 ** 31) throw new InputError(`${file}: ${st.size} bytes is over the 2 GB protobuf limit; large models must keep weights in external data`);
  const bytes = await fsp.readFile(file);
  let model: ModelProto;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    throw new InputError(`${file} is not an ONNX model (${(e as Error).message})`);
  }
  if (!model.graph || ((model.graph.node ?? []).length === 0 && (model.graph.output ?? []).length === 0)) {
    throw new InputError(`${file} is not an ONNX model (no graph)`);
  }
  return model;
}

/** Read every EXTERNAL tensor's bytes (paths relative to `baseDir`) into rawData. */
export async function resolveExternalData(model: ModelProto, baseDir: string): Promise<void> {
  const handles = new Map<string, { fh: fsp.FileHandle; size: number }>();
  try {
    for (const t of allTensors(model.graph!)) {
      if (t.dataLocation !== EXTERNAL) continue;
      const { location, offset, length } = externalEntries(t);
      const file = path.resolve(baseDir, location);
      let h = handles.get(file);
      if (!h) {
        const st = await statOrNull(file);
        if (!st) throw new InputError(`external data file not found: ${file} (tensor ${t.name})`);
        h = { fh: await fsp.open(file, 'r'), size: st.size };
        handles.set(file, h);
      }
      const len = length ?? h.size - offset;
      if (offset + len > h.size) throw new InputError(`tensor ${t.name}: external data runs past the end of ${file}`);
      t.rawData = await readAt(h.fh, offset, len);
      // Deleting (rather than setting DEFAULT) keeps the re-encoded bytes identical to an inline model.
      delete t.dataLocation;
      t.externalData = [];
    }
  } finally {
    for (const { fh } of handles.values()) await fh.close();
  }
}

export interface SaveOptions {
  /** 'auto' (default): external when the weights exceed `threshold` bytes. */
  externalData?: 'auto' | 'always' | 'never';
  /** Data file name, relative to the model's folder; default `<model file name>.data`. */
  location?: string;
  /** Total tensor bytes above which 'auto' goes external; default 1.8e9. */
  threshold?: number;
  /** Tensors below this many bytes stay inline; default 1024 (as onnx.save). */
  minTensorBytes?: number;
}

function tensorBytes(t: TensorProto): number {
  if (t.rawData) return t.rawData.length;
  return 4 * ((t.floatData?.length ?? 0) + (t.int32Data?.length ?? 0)) + 8 * ((t.int64Data?.length ?? 0) + (t.doubleData?.length ?? 0) + (t.uint64Data?.length ?? 0));
}

/**
 * Write a model. With external data, initializers of at least `minTensorBytes` go to
 * ONE data file beside the model, appended tensor by tensor through a file handle,
 * and are referenced by location/offset/length entries. Files are written under
 * temporary names and renamed at the end, so a failed save leaves old files intact.
 * The model object passed in is not modified.
 */
export async function saveModel(model: ModelProto, file: string, opts: SaveOptions = {}): Promise<{ externalDataFile?: string }> {
  const g = model.graph;
  if (!g) throw new Error('saveModel: model has no graph');
  const mode = opts.externalData ?? 'auto';
  const threshold = opts.threshold ?? EXTERNAL_DATA_THRESHOLD;
  const minBytes = opts.minTensorBytes ?? MIN_EXTERNAL_BYTES;
  let total = 0;
  for (const t of allTensors(g)) total += tensorBytes(t);
  const external = mode === 'always' || (mode === 'auto' && total > threshold);
  if (!external && total >= 2 ** 31 - 2 ** 24) {
    throw new Error(`saveModel: ${total} bytes of tensors exceed the 2 GB protobuf limit; use external data`);
  }
  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tag = `.tmp-${process.pid}-${Date.now()}`; // the temporary-name form removeStaleTemps knows
  removeStaleTemps(file);
  if (!external) {
    await writeFileAtomic(file, encodeModel(model), tag);
    return {};
  }
  const location = opts.location ?? `${path.basename(file)}.data`;
  if (path.isAbsolute(location) || location.split(/[\\/]/).includes('..')) throw new Error(`saveModel: external data location must be a plain relative path: ${location}`);
  const dataFile = path.join(path.dirname(path.resolve(file)), location);
  removeStaleTemps(dataFile);
  const dataTmp = dataFile + tag;
  const fh = await fsp.open(dataTmp, 'w');
  let offset = 0;
  const initializer: TensorProto[] = [];
  try {
    for (const t of g.initializer ?? []) {
      const raw = t.rawData;
      if (!raw || raw.length < minBytes) {
        initializer.push(t);
        continue;
      }
      if (raw.length >= ALIGN_THRESHOLD && offset % ALIGNMENT !== 0) offset += ALIGNMENT - (offset % ALIGNMENT);
      await writeAll(fh, raw, offset);
      initializer.push({
        ...t,
        rawData: null,
        dataLocation: EXTERNAL,
        externalData: [
          { key: 'location', value: location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(raw.length) },
        ],
      });
      offset += raw.length;
    }
  } finally {
    await fh.close();
  }
  const bytes = encodeModel({ ...model, graph: { ...g, initializer } });
  const modelTmp = file + tag;
  try {
    await fsp.writeFile(modelTmp, bytes);
    await fsp.rename(dataTmp, dataFile);
    await fsp.rename(modelTmp, file);
  } catch (e) {
    await fsp.rm(dataTmp, { force: true });
    await fsp.rm(modelTmp, { force: true });
    throw e;
  }
  return { externalDataFile: dataFile };
}

async function writeFileAtomic(file: string, bytes: Uint8Array, tag: string): Promise<void> {
  const tmp = file + tag;
  try {
    await fsp.writeFile(tmp, bytes);
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
