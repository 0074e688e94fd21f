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

async function gradientPass(source: WeightSource, layers: PrunableLayer[], windows: Int32Array[], opts: StreamedGradientOptions, scratch: ScratchFloats | null, emit: (l: PrunableLayer, G: Float32Array) => void): Promise<void> {
  checkGradientInputs(layers, windows);
  const upcast = hasFloat16(source.model);
  const toF32 = (m: ModelProto) => (upcast ? upcastToFloat32(m) : m);
  const stream = new SegmentStream(source, windows, { ...opts, batchSize: 1 });
  const plan = stream.plan;
  const bySeg = segmentOfLayers(stream, layers);
  const lowest = Math.min(...bySeg.keys());
  const producer = new Map<string, number>();
  for (const s of plan.segments) for (const o of s.outputs) producer.set(o, s.index);
  const specs = plan.segments.filter((s) => s.index >= lowest);
  const total = (plan.segments.length - 1 + specs.length) * windows.length;
  let done = 0;
  const tick = () => opts.onProgress?.(++done, total);

  // Forward: keep what every segment from `lowest` up reads, per window; what blocks
  // produce goes to the scratch file when there is one (the prelude's tensors are shared).
  const kept = new Map<number, Array<Map<string, Kept>>>();
  const keep = (spec: SegmentSpec) => {
    if (spec.index < lowest) return;
    kept.set(spec.index, stream.batches.map((_, b) => {
      const m = new Map<string, Kept>();
      for (const n of spec.inputs) {
        const t = stream.get(b, n);
        if (!t) continue;
        if (scratch && (producer.get(n) ?? -1) >= 0 && t.type === 'float32') {
          const key = `${spec.index}:${b}:${n}`;
          scratch.put(key, t.data as Float32Array, [...t.dims]);
          m.set(n, { key });
        } else m.set(n, t);
      }
      return m;
    }));
  };
  const load = (k: Kept): ort.Tensor => ('key' in k ? new ort.Tensor('float32', scratch!.get(k.key), scratch!.dims(k.key)) : k);
  const isFloat = (k: Kept | undefined) => !!k && ('key' in k || k.type === 'float32');
  for (const spec of plan.segments.slice(0, -1)) {
    keep(spec);
    await stream.run(spec, { transform: toF32, onBatch: tick });
  }
  keep(stream.tail);

  // Backward: dLoss/d(tensor) per window for the tensors crossing a cut.
  const upstream = new Map<string, ort.Tensor[]>();
  for (const spec of [...specs].reverse()) {
    const inputs = kept.get(spec.index)!;
    const isTail = spec === stream.tail;
    const outs = spec.outputs.filter((o) => upstream.has(o));
    const own = bySeg.get(spec.index) ?? [];
    // Carried float inputs produced by a segment that is differentiated too.
    const carriedWrt = spec.inputs.filter((n) => (producer.get(n) ?? -2) >= lowest && isFloat(inputs[0]!.get(n)));
    const wrt = [...new Set(own.map((l) => l.initializer)), ...carriedWrt];
    if (!isTail && outs.length === 0) throw new Error(`gradients: segment ${spec.kind} ${spec.index} has no upstream gradient`);
    const tensors = await source.resolve(spec.initializers);
    const types = new Map([...inputs[0]!].map(([n, k]) => [n, 'key' in k ? DataType.FLOAT : ORT_TO_ONNX[k.type] ?? DataType.FLOAT]));
    const base = toF32(modelOf(source.model, spec, types, tensors, isTail ? ['input_ids'] : []));
    const withLoss = isTail ? appendLoss(base) : withVjpLoss(base, outs);
    const loss = isTail ? 'loss' : VJP_LOSS;
    const feedsFor = (b: number): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = { ...windowFeeds(source.model, stream.batches[b]!) };
      for (const [n, k] of inputs[b]!) f[n] = load(k);
      for (const o of outs) f[upstreamName(o)] = upstream.get(o)![b]!;
      return f;
    };
    // Weights are fed as views of their bytes, never copied into model bytes.
    const sessionOpts = { threads: opts.threads, device: opts.device, feedWeights: 'always' as const };
    const gradModel = await buildGradientGraph(withLoss, { loss, wrt, feeds: feedsFor(0), probeSession: sessionOpts });
    const session = await createSession(gradModel, sessionOpts);
    const sums = new Map<string, Float64Array>();
    try {
      for (let b = 0; b < stream.batches.length; b++) {
        const f = feedsFor(b);
        const res = await session.run(Object.fromEntries(session.inputNames.map((k) => [k, f[k]!])));
        for (const name of new Set(own.map((l) => l.initializer))) addSquares(sums, name, res[gradName(name)]!.data as Float32Array);
        for (const n of carriedWrt) {
          const g = res[gradName(n)]!;
          let list = upstream.get(n);
          if (!list) upstream.set(n, (list = []));
          // A tensor read by several later segments gets the sum of their gradients.
          const prev = list[b]?.data as Float32Array | undefined;
          if (prev) prev.forEach((_, i) => (prev[i]! += (g.data as Float32Array)[i]!));
          else list[b] = g;
        }
        tick();
      }
    } finally {
      await session.release();
    }
    for (const o of outs) upstream.delete(o);
    kept.delete(spec.index);
    for (const l of own) emit(l, gradientNorm(l, sums.get(l.initializer)!));
  }
}
