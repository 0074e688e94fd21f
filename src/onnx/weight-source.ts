/**
 * Where a model's weights come from when it may not fit in memory: the graph is
 * always in memory (it is small), each initializer's bytes are read when a segment
 * needs them and let go afterwards. An in-memory model is a source too (its tensors
 * already hold their bytes). The writer is the other direction: pruned tensors go
 * to the output's data file as they are made, and whatever was not replaced is
 * copied from the source tensor by tensor at the end.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.ts';
import { DataType, encodeModel, onnx, type ModelProto, type TensorProto } from './proto.ts';
import { externalEntries, readAt, readModelFile, resolveExternalData, writeAll } from './model-io.ts';
import { tensorDims } from './tensor.ts';

const EXTERNAL = onnx.TensorProto.DataLocation.EXTERNAL;

export interface WeightSource {
  /** The graph; initializers may still be external. */
  readonly model: ModelProto;
  /** The named initializers holding their bytes (copies for external ones; the model's own objects otherwise). */
  resolve(names: readonly string[]): Promise<TensorProto[]>;
  close(): Promise<void>;
}

export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === EXTERNAL;
}

/** Bytes of an initializer's data, stored or external. */
export function storedBytes(t: TensorProto): number {
  if (isExternal(t)) {
    const e = externalEntries(t);
    if (e.length !== undefined) return e.length;
  }
  if (t.rawData && t.rawData.length > 0) return t.rawData.length;
  const n = tensorDims(t).reduce((a, b) => a * b, 1);
  return n * (t.dataType === DataType.FLOAT16 || t.dataType === DataType.BFLOAT16 ? 2 : t.dataType === DataType.DOUBLE || t.dataType === DataType.INT64 ? 8 : 4);
}

/** Total bytes of a model's initializers (weights), external ones included. */
export function modelWeightBytes(model: ModelProto): number {
  return (model.graph?.initializer ?? []).reduce((a, t) => a + storedBytes(t), 0);
}

/**
 * Memory a whole-model session needs, roughly: the weights as loaded plus onnxruntime's
 * own copy (prepacked MatMul weights); float16 models are computed in their type.
 */
export function wholeModelBytes(source: WeightSource): number {
  return 2 * modelWeightBytes(source.model);
}

/** A source over a model whose tensors are all in memory. */
export function memorySource(model: ModelProto): WeightSource {
  const byName = new Map((model.graph?.initializer ?? []).map((t) => [t.name!, t]));
  return {
    model,
    resolve: async (names) => names.map((n) => {
      const t = byName.get(n);
      if (!t) throw new Error(`no initializer ${n}`);
      if (isExternal(t)) throw new Error(`initializer ${n} is external in an in-memory source`);
      return t;
    }),
    close: async () => {},
  };
}

/** An ONNX file whose external data is read tensor by tensor, on demand. */
export class OnnxFileSource implements WeightSource {
  private readonly handles = new Map<string, { fh: fsp.FileHandle; size: number }>();
  private readonly byName: Map<string, TensorProto>;
  private constructor(readonly model: ModelProto, readonly original: ModelProto, readonly baseDir: string) {
    this.byName = new Map((model.graph?.initializer ?? []).map((t) => [t.name!, t]));
  }

  /**
   * Open an ONNX file; `prepare` turns the stored graph into the runnable one (sharing
   * its initializer objects, e.g. an Optimum decoder without its KV cache).
   */
  static async open(file: string, prepare: (m: ModelProto) => ModelProto = (m) => m): Promise<OnnxFileSource> {
    const original = await readModelFile(file);
    return new OnnxFileSource(prepare(original), original, path.dirname(path.resolve(file)));
  }

  /** Read every external tensor into the model (it is then all in memory) and return it. */
  async loadAll(): Promise<ModelProto> {
    await resolveExternalData(this.original, this.baseDir);
    return this.model;
  }

  /** Whether any initializer lives in external data. */
  get lazy(): boolean {
    return (this.model.graph?.initializer ?? []).some(isExternal);
  }

  async resolve(names: readonly string[]): Promise<TensorProto[]> {
    const out: TensorProto[] = [];
    for (const n of names) {
      const t = this.byName.get(n);
      if (!t) throw new Error(`no initializer ${n}`);
      out.push(isExternal(t) ? { ...t, rawData: await this.readExternal(t), dataLocation: undefined, externalData: [] } : t);
    }
    return out;
  }

  private async readExternal(t: TensorProto): Promise<Uint8Array> {
    const { location, offset, length } = externalEntries(t);
    const file = path.resolve(this.baseDir, location);
    let h = this.handles.get(file);
    if (!h) {
      let size: number;
      try {
        size = (await fsp.stat(file)).size;
      } catch {
        throw new InputError(`external data file not found: ${file} (tensor ${t.name})`);
      }
      h = { fh: await fsp.open(file, 'r'), size };
      this.handles.set(file, h);
    }
    const len = length ?? h.size - offset;
    if (offset + len > h.size) {
      throw new InputError(`tensor ${t.name}: external data runs past the end of ${file}`);
    }
    return readAt(h.fh, offset, len);
  }

  async close(): Promise<void> {
    for (const { fh } of this.handles.values()) await fh.close();
    this.handles.clear();
  }
}

const ALIGNMENT = 65536;
const MIN_EXTERNAL_BYTES = 1024;

/**
 * Writes a model with external data tensor by tensor: `put` appends a (pruned)
 * tensor's bytes as soon as it is made; `finish` copies every other initializer from
 * the source, writes the graph and renames both files into place (temporary names
 * until then, so a failed run leaves nothing half-written under the final names).
 */
export class ExternalDataWriter {
  private offset = 0;
  private readonly written = new Map<string, TensorProto>();
  private constructor(private readonly file: string, private readonly dataFile: string, private readonly tag: string, private readonly fh: fsp.FileHandle) {}

  static async open(file: string): Promise<ExternalDataWriter> {
    await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    const dataFile = `${path.resolve(file)}.data`;
    const tag = `.tmp-${process.pid}-${Date.now()}`;
    return new ExternalDataWriter(path.resolve(file), dataFile, tag, await fsp.open(dataFile + tag, 'w'));
  }

  /** Store a tensor (its rawData) in the data file; small tensors stay inline. */
  async put(t: TensorProto): Promise<void> {
    const raw = t.rawData;
    if (!raw || raw.length < MIN_EXTERNAL_BYTES) {
      this.written.set(t.name!, t);
      return;
    }
    if (raw.length >= ALIGNMENT && this.offset % ALIGNMENT !== 0) this.offset += ALIGNMENT - (this.offset % ALIGNMENT);
    await writeAll(this.fh, raw, this.offset);
    this.written.set(t.name!, {
      ...t,
      rawData: null,
      floatData: [],
      dataLocation: EXTERNAL,
      externalData: [
        { key: 'location', value: path.basename(this.dataFile) },
        { key: 'offset', value: String(this.offset) },
        { key: 'length', value: String(raw.length) },
      ],
    });
    this.offset += raw.length;
  }

  has(name: string): boolean {
    return this.written.has(name);
  }

  /** Copy the initializers not yet written from `source`, then write `model`'s graph with them. */
  async finish(source: WeightSource, model: ModelProto = source.model): Promise<{ externalDataFile: string }> {
    const inits = model.graph?.initializer ?? [];
    try {
      for (const t of inits) {
        if (this.written.has(t.name!)) continue;
        const [r] = await source.resolve([t.name!]);
        await this.put(r!);
      }
      await this.fh.close();
      const bytes = encodeModel({ ...model, graph: { ...model.graph, initializer: inits.map((t) => this.written.get(t.name!)!) } });
      await fsp.writeFile(this.file + this.tag, bytes);
      await fsp.rename(this.dataFile + this.tag, this.dataFile);
      await fsp.rename(this.file + this.tag, this.file);
    } catch (e) {
      await this.abort();
      throw e;
    }
    return { externalDataFile: this.dataFile };
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
    await fsp.rm(this.dataFile + this.tag, { force: true });
    await fsp.rm(this.file + this.tag, { force: true });
  }
}
