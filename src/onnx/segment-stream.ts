/**
 * Run a decoder segment by segment (see block-split.ts) over batches of token
 * windows, carrying the tensors that cross each cut from one segment to the next.
 * One segment's session (and weights) at a time; what is carried per batch is the
 * hidden state plus the prelude's mask and rotary tables.
 */
import { DataType, type ModelProto, type TensorProto } from './proto.ts';
import { planSegments, segmentModel, type SegmentPlan, type SegmentSpec } from './block-split.ts';
import { createSession, ort, type SessionOptions } from './session.ts';
import type { WeightSource } from './weight-source.ts';

const ORT_TO_ONNX: Record<string, number> = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  int64: DataType.INT64,
  int32: DataType.INT32,
  bool: DataType.BOOL,
  float64: DataType.DOUBLE,
  uint8: DataType.UINT8,
  int8: DataType.INT8,
};

export type Batch = Map<string, ort.Tensor>;

/** Feeds for a batch of windows: input_ids, attention_mask (ones) and position_ids (0..t-1), each as the graph declares it. */
export function windowFeeds(model: ModelProto, windows: Int32Array[]): Record<string, ort.Tensor> {
  const b = windows.length;
  const t = windows[0]!.length;
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of model.graph?.input ?? []) {
    const name = v.name!;
    const elem = v.type?.tensorType?.elemType ?? DataType.INT64;
    const make = (fill: (i: number, j: number) => number): ort.Tensor => {
      if (elem === DataType.INT32) {
        const a = new Int32Array(b * t);
        for (let i = 0; i < b; i++) for (let j = 0; j < t; j++) a[i * t + j] = fill(i, j);
        return new ort.Tensor('int32', a, [b, t]);
      }
      const a = new BigInt64Array(b * t);
      for (let i = 0; i < b; i++) for (let j = 0; j < t; j++) a[i * t + j] = BigInt(fill(i, j));
      return new ort.Tensor('int64', a, [b, t]);
    };
    if (name === 'input_ids') feeds[name] = make((i, j) => windows[i]![j]!);
    else if (name === 'attention_mask') feeds[name] = make(() => 1);
    else if (name === 'position_ids') feeds[name] = make((_, j) => j);
  }
  return feeds;
}

export interface StreamOptions extends SessionOptions {
  /** Windows per session run (default 8). */
  batchSize?: number;
}

export interface RunSegmentOptions {
  /** The segment's initializers with their bytes (default: resolved from the source). */
  tensors?: TensorProto[];
  /** Turn the segment model into the one to run (instrumentation); its outputs must keep the segment's outputs when `advance`. */
  transform?: (m: ModelProto) => ModelProto;
  /** Replace the carried tensors with the segment's outputs (default true). */
  advance?: boolean;
  /** Extra graph inputs fed from the window feeds (e.g. input_ids in the tail for the loss). */
  tokenInputs?: string[];
  /** Called with each batch's outputs. */
  onBatch?: (batch: number, out: ort.InferenceSession.ReturnType, windows: number) => void;
}

/** Carried state for a set of windows, advanced one segment at a time. */
export class SegmentStream {
  readonly plan: SegmentPlan;
  readonly batches: Int32Array[][];
  private readonly carried: Batch[];
  private readonly feeds: Record<string, ort.Tensor>[];

  constructor(readonly source: WeightSource, windows: Int32Array[], private readonly opts: StreamOptions = {}, plan?: SegmentPlan) {
    this.plan = plan ?? planSegments(source.model);
    const bs = Math.max(1, opts.batchSize ?? 8);
    this.batches = [];
    for (let s = 0; s < windows.length; s += bs) this.batches.push(windows.slice(s, s + bs));
    this.carried = this.batches.map(() => new Map());
    this.feeds = this.batches.map((b) => windowFeeds(source.model, b));
  }

  get prelude(): SegmentSpec {
    return this.plan.segments[0]!;
  }
  get tail(): SegmentSpec {
    return this.plan.segments[this.plan.segments.length - 1]!;
  }
  block(i: number): SegmentSpec {
    return this.plan.segments[i + 1]!;
  }

  /** Element types of the tensors carried into `spec`. */
  private types(spec: SegmentSpec): Map<string, number> {
    const m = new Map<string, number>();
    const first = this.carried[0]!;
    for (const name of spec.inputs) {
      const t = first.get(name);
      if (t) m.set(name, ORT_TO_ONNX[t.type] ?? DataType.FLOAT);
    }
    return m;
  }

  /** The model a segment runs as (before any transform), with the given initializer tensors. */
  segmentModel(spec: SegmentSpec, tensors: TensorProto[], tokenInputs: string[] = []): ModelProto {
    const withTokens = tokenInputs.length > 0 ? { ...spec, inputs: [...spec.inputs, ...tokenInputs.filter((n) => !spec.inputs.includes(n))] } : spec;
    const m = segmentModel(this.source.model, withTokens, this.types(spec));
    m.graph!.initializer = tensors;
    return m;
  }

  /** Run `spec` over every batch (its weights fed as views of their bytes), then release its session. */
  async run(spec: SegmentSpec, o: RunSegmentOptions = {}): Promise<void> {
    const tensors = o.tensors ?? (await this.source.resolve(spec.initializers));
    const base = this.segmentModel(spec, tensors, o.tokenInputs);
    const model = o.transform ? o.transform(base) : base;
    const session = await createSession(model, { threads: this.opts.threads, device: this.opts.device, feedWeights: 'always' });
    const advance = o.advance ?? true;
    try {
      for (const [b, carried] of this.carried.entries()) {
        const feeds: Record<string, ort.Tensor> = {};
        for (const name of session.inputNames) {
          const t = carried.get(name) ?? this.feeds[b]![name];
          if (!t) throw new Error(`segment ${spec.kind} ${spec.index}: nothing to feed ${name}`);
          feeds[name] = t;
        }
        const out = await session.run(feeds);
        o.onBatch?.(b, out, this.batches[b]!.length);
        if (advance) {
          for (const name of spec.outputs) carried.set(name, out[name]!);
          for (const name of [...carried.keys()]) if ((this.plan.lastUse.get(name) ?? -2) <= spec.index) carried.delete(name);
        }
      }
    } finally {
      await session.release();
    }
  }

  /** A carried tensor of a batch (e.g. the logits after the tail). */
  get(batch: number, name: string): ort.Tensor | undefined {
    return this.carried[batch]!.get(name);
  }
}
