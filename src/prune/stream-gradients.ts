/**
 * G (gradients.ts) block by block, for models that do not fit in memory. Backpropagation
 * through a chain of segments is a chain of vector-Jacobian products, so:
 *
 * 1. forward: the windows run segment by segment (one at a time, as gradients.ts runs
 *    them), and the tensors each segment reads (hidden states; the prelude's mask and
 *    rotary tables are shared) are kept per window;
 * 2. backward, from the tail down to the first segment with a prunable layer: the tail's
 *    gradient graph (final norm, head, the same mean next-token loss) gives dLoss/dh at
 *    the last block's output; each block's gradient graph differentiates
 *    sum(out * upstream) with the upstream gradient fed as an input, which gives its
 *    weights' gradients and dLoss/dh at its input for the block below.
 *
 * Each window's weight gradients are squared into float64 sums and turned into G as soon
 * as their segment is done, exactly as the whole-model computation does; only one
 * segment's weights and gradient graph are in memory at a time.
 */
import { InputError } from '../errors.ts';
import { DataType, onnx, type ModelProto, type TensorProto } from '../onnx/proto.ts';
import { node } from '../onnx/graph-build.ts';
import { appendLoss } from '../onnx/loss.ts';
import { buildGradientGraph, gradName } from '../onnx/autodiff/grad-graph.ts';
import { hasFloat16, upcastToFloat32 } from '../onnx/autodiff/upcast.ts';
import { ORT_TO_ONNX } from '../onnx/autodiff/shape-probe.ts';
import { SegmentStream, windowFeeds, type StreamOptions } from '../onnx/segment-stream.ts';
import { segmentModel, type SegmentSpec } from '../onnx/block-split.ts';
import { createSession, ort } from '../onnx/session.ts';
import type { WeightSource } from '../onnx/weight-source.ts';
import { addSquares, checkGradientInputs, gradientNorm } from './gradients.ts';
import type { PrunableLayer } from './discover.ts';
import type { ScratchFloats } from './scratch-floats.ts';

export interface StreamedGradientOptions extends StreamOptions {
  /** Progress over all segment runs (forward and backward), one step per window. */
  onProgress?: (done: number, total: number) => void;
}

/** Graph input carrying dLoss/d`name` into a segment's gradient graph. */
const upstreamName = (name: string) => `upstream::${name}`;
const VJP_LOSS = 'vjp::loss';

/**
 * The scalar sum over `outs` of sum(out * upstream(out)): its gradient with respect to
 * anything below is the vector-Jacobian product of the upstream gradients.
 */
function withVjpLoss(m: ModelProto, outs: string[]): ModelProto {
  const g = m.graph!;
  const parts = outs.map((o) => `vjp::${o}::sum`);
  const nodes = outs.flatMap((o, k) => [
    node('Mul', [o, upstreamName(o)], [`vjp::${o}::mul`]),
    node('ReduceSum', [`vjp::${o}::mul`], [parts[k]!], undefined, { keepdims: 0 }),
  ]);
  return onnx.ModelProto.create({
    ...m,
    graph: {
      ...g,
      node: [...(g.node ?? []), ...nodes, node('Sum', parts, [VJP_LOSS])],
      input: [...(g.input ?? []), ...outs.map((o) => ({ name: upstreamName(o), type: { tensorType: { elemType: DataType.FLOAT } } }))],
      output: [{ name: VJP_LOSS }],
    },
  });
}

/** A segment's model with its weights and the given input types, reading `tokenInputs` from the window feeds too. */
function modelOf(model: ModelProto, spec: SegmentSpec, types: Map<string, number>, tensors: TensorProto[], tokenInputs: string[]): ModelProto {
  const m = segmentModel(model, { ...spec, inputs: [...spec.inputs, ...tokenInputs.filter((n) => !spec.inputs.includes(n))] }, types);
  m.graph!.initializer = tensors;
  return m;
}

/** Which segment (index: -1 prelude .. blocks tail) reads each prunable layer's weight. */
function segmentOfLayers(stream: SegmentStream, layers: PrunableLayer[]): Map<number, PrunableLayer[]> {
  const bySeg = new Map<number, PrunableLayer[]>();
  for (const l of layers) {
    const segs = stream.plan.segments.filter((s) => s.initializers.includes(l.initializer));
    if (segs.length !== 1) throw new InputError(`gradients: layer ${l.name}'s weight is read by ${segs.length} segments of the block split; G cannot be computed block by block`);
    const i = segs[0]!.index;
    bySeg.set(i, [...(bySeg.get(i) ?? []), l]);
  }
  return bySeg;
}

/** G of every layer, [out, in], computed block by block (see the file comment) and held in memory; equal to computeGradientNorms. */
export async function streamedGradientNorms(source: WeightSource, layers: PrunableLayer[], windows: Int32Array[], opts: StreamedGradientOptions = {}): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  await gradientPass(source, layers, windows, opts, null, (l, G) => out.set(l.name, G));
  return new Map(layers.map((l) => [l.name, out.get(l.name)!]));
}

/** Key of a layer's G in the scratch file of streamedGradientNormsToScratch. */
export const scratchGradientKey = (layer: string) => `G:${layer}`;

/**
 * The same G, parked in `scratch` under scratchGradientKey(layer) as each block is done,
 * with the hidden states the blocks produce parked there too until the backward pass
 * reads them: memory holds one segment, the embedding's output and two gradients of
 * the hidden states, whatever the depth.
 */
export async function streamedGradientNormsToScratch(source: WeightSource, layers: PrunableLayer[], windows: Int32Array[], scratch: ScratchFloats, opts: StreamedGradientOptions = {}): Promise<void> {
  await gradientPass(source, layers, windows, opts, scratch, (l, G) => scratch.put(scratchGradientKey(l.name), G, [l.out, l.in]));
}

/** A tensor a segment reads, in memory or parked in the scratch file. */
type Kept = ort.Tensor | { key: string };
/** What a segment reads, per window. */
type KeptInputs = Array<Map<string, Kept>>;

async function gradientPass(source: WeightSource, layers: PrunableLayer[], windows: Int32Array[], opts: StreamedGradientOptions, scratch: ScratchFloats | null, emit: (l: PrunableLayer, G: Float32Array) => void): Promise<void> {
  checkGradientInputs(layers, windows);
  const pass = new GradientPass(source, layers, windows, opts, scratch);
  const kept = await pass.forward();
  // dLoss/d(tensor) per window, for the tensors crossing a cut.
  const upstream = new Map<string, ort.Tensor[]>();
  for (const spec of pass.backwardOrder()) {
    const own = pass.bySeg.get(spec.index) ?? [];
    const sums = await pass.backward(spec, kept.get(spec.index)!, own, upstream);
    kept.delete(spec.index);
    for (const l of own) emit(l, gradientNorm(l, sums.get(l.initializer)!));
  }
}

/** One block-by-block gradient computation: the segments, what they read, progress. */
class GradientPass {
  readonly stream: SegmentStream;
  readonly bySeg: Map<number, PrunableLayer[]>;
  /** The lowest segment with a prunable layer: nothing below it is differentiated. */
  private readonly lowest: number;
  private readonly producer = new Map<string, number>();
  private readonly upcast: boolean;
  private done = 0;
  private readonly total: number;

  constructor(private readonly source: WeightSource, layers: PrunableLayer[], windows: Int32Array[], private readonly opts: StreamedGradientOptions, private readonly scratch: ScratchFloats | null) {
    this.stream = new SegmentStream(source, windows, { ...opts, batchSize: 1 });
    const plan = this.stream.plan;
    this.bySeg = segmentOfLayers(this.stream, layers);
    this.lowest = Math.min(...this.bySeg.keys());
    for (const s of plan.segments) for (const o of s.outputs) this.producer.set(o, s.index);
    this.upcast = hasFloat16(source.model);
    this.total = (plan.segments.length - 1 + this.backwardOrder().length) * windows.length;
  }

  /** Segments to differentiate, tail first. */
  backwardOrder(): SegmentSpec[] {
    return this.stream.plan.segments.filter((s) => s.index >= this.lowest).reverse();
  }

  private tick(): void {
    this.opts.onProgress?.(++this.done, this.total);
  }

  /** float16 models are differentiated in float32, as gradients.ts does. */
  private toF32 = (m: ModelProto): ModelProto => (this.upcast ? upcastToFloat32(m) : m);

  /** Run the windows through every segment but the tail, keeping what each differentiated segment reads. */
  async forward(): Promise<Map<number, KeptInputs>> {
    const kept = new Map<number, KeptInputs>();
    for (const spec of this.stream.plan.segments.slice(0, -1)) {
      if (spec.index >= this.lowest) kept.set(spec.index, this.keep(spec));
      await this.stream.run(spec, { transform: this.toF32, onBatch: () => this.tick() });
    }
    kept.set(this.stream.tail.index, this.keep(this.stream.tail));
    return kept;
  }

  /** The carried tensors `spec` reads; what blocks produce goes to the scratch file when there is one (the prelude's tensors are shared). */
  private keep(spec: SegmentSpec): KeptInputs {
    return this.stream.batches.map((_, b) => {
      const m = new Map<string, Kept>();
      for (const n of spec.inputs) {
        const t = this.stream.get(b, n);
        if (!t) continue;
        if (this.scratch && (this.producer.get(n) ?? -1) >= 0 && t.type === 'float32') {
          const key = `${spec.index}:${b}:${n}`;
          this.scratch.put(key, t.data as Float32Array, [...t.dims]);
          m.set(n, { key });
        } else m.set(n, t);
      }
      return m;
    });
  }

  private load(k: Kept): ort.Tensor {
    return 'key' in k ? new ort.Tensor('float32', this.scratch!.get(k.key), this.scratch!.dims(k.key)) : k;
  }

  /** The segment's model with its loss: the LM loss in the tail, sum(out * upstream) in a block. */
  private async lossModel(spec: SegmentSpec, inputs: KeptInputs, outs: string[]): Promise<{ model: ModelProto; loss: string }> {
    const isTail = spec === this.stream.tail;
    const tensors = await this.source.resolve(spec.initializers);
    const types = new Map([...inputs[0]!].map(([n, k]) => [n, 'key' in k ? DataType.FLOAT : ORT_TO_ONNX[k.type] ?? DataType.FLOAT]));
    const base = this.toF32(modelOf(this.source.model, spec, types, tensors, isTail ? ['input_ids'] : []));
    if (isTail) return { model: appendLoss(base), loss: 'loss' };
    if (outs.length === 0) throw new Error(`gradients: segment ${spec.kind} ${spec.index} has no upstream gradient`);
    return { model: withVjpLoss(base, outs), loss: VJP_LOSS };
  }

  /**
   * Differentiate `spec` window by window: the squared gradients of its own layers'
   * weights summed in float64 (returned), and dLoss/d(input) added to `upstream` for the
   * segments below; its outputs' upstream gradients are let go.
   */
  async backward(spec: SegmentSpec, inputs: KeptInputs, own: PrunableLayer[], upstream: Map<string, ort.Tensor[]>): Promise<Map<string, Float64Array>> {
    const outs = spec.outputs.filter((o) => upstream.has(o));
    // Carried float inputs produced by a segment that is differentiated too.
    const carried = spec.inputs.filter((n) => (this.producer.get(n) ?? -2) >= this.lowest && isFloat(inputs[0]!.get(n)));
    const weights = [...new Set(own.map((l) => l.initializer))];
    const { model, loss } = await this.lossModel(spec, inputs, outs);
    const feedsFor = (b: number): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = { ...windowFeeds(this.source.model, this.stream.batches[b]!) };
      for (const [n, k] of inputs[b]!) f[n] = this.load(k);
      for (const o of outs) f[upstreamName(o)] = upstream.get(o)![b]!;
      return f;
    };
    // Weights are fed as views of their bytes, never copied into model bytes.
    const sessionOpts = { threads: this.opts.threads, device: this.opts.device, feedWeights: 'always' as const };
    const gradModel = await buildGradientGraph(model, { loss, wrt: [...weights, ...carried], feeds: feedsFor(0), probeSession: sessionOpts });
    const session = await createSession(gradModel, sessionOpts);
    const sums = new Map<string, Float64Array>();
    try {
      for (let b = 0; b < this.stream.batches.length; b++) {
        const f = feedsFor(b);
        const res = await session.run(Object.fromEntries(session.inputNames.map((k) => [k, f[k]!])));
        for (const name of weights) addSquares(sums, name, res[gradName(name)]!.data as Float32Array);
        for (const n of carried) addUpstream(upstream, n, b, res[gradName(n)]!);
        this.tick();
      }
    } finally {
      await session.release();
    }
    for (const o of outs) upstream.delete(o);
    return sums;
  }
}

function isFloat(k: Kept | undefined): boolean {
  return !!k && ('key' in k || k.type === 'float32');
}

/** Window b's dLoss/d`name`; a tensor read by several later segments gets the sum of their gradients. */
function addUpstream(upstream: Map<string, ort.Tensor[]>, name: string, b: number, g: ort.Tensor): void {
  let list = upstream.get(name);
  if (!list) upstream.set(name, (list = []));
  const prev = list[b]?.data as Float32Array | undefined;
  if (!prev) {
    list[b] = g;
    return;
  }
  const add = g.data as Float32Array;
  for (let i = 0; i < prev.length; i++) prev[i]! += add[i]!;
}
