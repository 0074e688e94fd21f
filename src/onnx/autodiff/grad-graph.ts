/**
 * Reverse-mode autodiff over ONNX graphs. onnxruntime-node has no training API, so the
 * gradient of a scalar loss is computed by emitting one graph holding the forward pass
 * and its reverse sweep, which ORT then runs like any model. Shapes are fixed per batch
 * shape (read off one probe run), which keeps every backward node static and cheap.
 */
import { DataType, onnx, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../proto.ts';
import { modelOpset, valueInfo } from '../graph-build.ts';
import { numel } from '../tensor.ts';
import type { ort, SessionOptions } from '../session.ts';
import { InputError, check } from '../../errors.ts';
import { FLOAT_TYPES, probeTensors, zeroTensor, type TensorInfo } from './shape-probe.ts';
import { GradContext, type GradRule } from './context.ts';
import { elementwiseRules } from './rules-elementwise.ts';
import { shapeRules } from './rules-shape.ts';
import { matmulRules } from './rules-matmul.ts';
import { reduceRules } from './rules-reduce.ts';
import { lossRules } from './rules-loss.ts';

export interface GradientOptions {
  /** Name of the scalar loss tensor (a node output of the forward graph). */
  loss: string;
  /** Initializers or graph inputs to differentiate with respect to. */
  wrt: string[];
  /** Feeds for the probe run that fixes every shape (values of float inputs do not matter). */
  feeds?: Record<string, ort.Tensor>;
  /** Alternative to feeds: shapes of graph inputs; zero-filled feeds are synthesised. */
  shapes?: Record<string, number[]>;
  /** Turn the wrt initializers into graph inputs, so weights can be fed per run. */
  weightsAsInputs?: boolean;
  /** Forward tensors to expose as extra outputs (e.g. per-sequence losses). */
  keepOutputs?: string[];
  /** Session options of the probe run (e.g. feedWeights 'always', so the weights are not copied into the model bytes). */
  probeSession?: SessionOptions;
}

/** Output name of the gradient of `name` in a gradient graph. */
export function gradName(name: string): string {
  return `grad::${name}`;
}

const RULES: Record<string, GradRule> = { ...elementwiseRules, ...shapeRules, ...matmulRules, ...reduceRules, ...lossRules };

/** Ops whose outputs carry no gradient (integer/boolean logic, shape arithmetic, constants). */
const NO_GRADIENT = new Set([
  'Constant', 'Shape', 'Size', 'ConstantOfShape', 'Range', 'Equal', 'Less', 'Greater', 'LessOrEqual',
  'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'ArgMax', 'ArgMin', 'NonZero', 'IsNaN', 'IsInf', 'Sign',
  'Floor', 'Ceil', 'Round', 'EyeLike', 'OneHot', 'RandomNormal', 'RandomUniform', 'RandomNormalLike',
  'RandomUniformLike', 'Multinomial', 'Bernoulli', 'TopK_indices',
]);
const RANDOM = new Set(['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Multinomial', 'Bernoulli', 'Dropout']);

/** Nodes in dependency order (ONNX requires it, but be lenient with hand-made graphs). */
function topoSort(nodes: NodeProto[], available: Set<string>): NodeProto[] {
  const produced = new Set<string>();
  for (const n of nodes) for (const o of n.output ?? []) if (o) produced.add(o);
  const ready = new Set(available);
  const out: NodeProto[] = [];
  let pending = nodes;
  while (pending.length) {
    const next: NodeProto[] = [];
    for (const n of pending) {
      if ((n.input ?? []).every((i) => !i || ready.has(i) || !produced.has(i))) {
        out.push(n);
        for (const o of n.output ?? []) if (o) ready.add(o);
      } else next.push(n);
    }
    if (next.length === pending.length) throw new InputError(`gradient: the graph has a cycle through node '${next[0]!.name}'`);
    pending = next;
  }
  return out;
}

/** Feeds for the probe: the given ones, plus zeros for inputs known only by shape. */
function probeFeeds(model: ModelProto, opts: GradientOptions): Record<string, ort.Tensor> {
  const graph = model.graph!;
  const inits = new Set((graph.initializer ?? []).map((t) => t.name!));
  const feeds: Record<string, ort.Tensor> = { ...(opts.feeds ?? {}) };
  for (const vi of graph.input ?? []) {
    const name = vi.name!;
    if (feeds[name] || inits.has(name)) continue;
    const tt = vi.type?.tensorType;
    const shape = opts.shapes?.[name] ?? tt?.shape?.dim?.map((d) => (d.dimValue != null && !d.dimParam ? Number(d.dimValue) : NaN));
    check(shape && shape.every((d) => Number.isInteger(d) && d >= 0), `gradient: graph input '${name}' needs a feed or a shape (it has dynamic dims)`);
    feeds[name] = zeroTensor(tt?.elemType ?? DataType.FLOAT, shape);
  }
  return feeds;
}

/** Probe shapes, then emit the gradient graph. */
export async function buildGradientGraph(model: ModelProto, opts: GradientOptions): Promise<ModelProto> {
  check(model.graph, 'gradient: the model has no graph');
  const infos = await probeTensors(model, probeFeeds(model, opts), opts.probeSession);
  return emitGradientGraph(model, infos, opts);
}

/** Emit the gradient graph from already-probed tensor shapes. */
export function emitGradientGraph(model: ModelProto, probed: Map<string, TensorInfo>, opts: GradientOptions): ModelProto {
  const graph = model.graph!;
  let opset = modelOpset(model, 1);
  check(opset >= 13, `gradient: models with opset ${opset} are not supported (need opset >= 13)`);
  const infos = new Map(probed);
  const inits = new Map<string, TensorProto>((graph.initializer ?? []).map((t) => [t.name!, t]));
  const inputNames = new Set((graph.input ?? []).map((v) => v.name!));
  const producers = new Map<string, NodeProto>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) if (o) producers.set(o, n);

  check(producers.has(opts.loss) || inputNames.has(opts.loss), `gradient: loss tensor '${opts.loss}' is not in the graph`);
  const wrt = new Set(opts.wrt);
  for (const w of opts.wrt) {
    check(inits.has(w) || inputNames.has(w), `gradient: '${w}' is neither an initializer nor a graph input`);
    const wi = infos.get(w);
    check(wi && FLOAT_TYPES.has(wi.dtype), `gradient: '${w}' is not a float tensor`);
  }

  const lossInfo = infos.get(opts.loss);
  check(lossInfo && FLOAT_TYPES.has(lossInfo.dtype), `gradient: loss '${opts.loss}' is not a float tensor`);
  check(numel(lossInfo.dims) === 1, `gradient: loss '${opts.loss}' must be a scalar, has shape [${lossInfo.dims}]`);
  const available = new Set<string>([...inits.keys(), ...inputNames]);
  const nodes = topoSort(graph.node ?? [], available);

  // Tensors whose value is fixed for fixed input shapes.
  const staticNames = new Set<string>([...inits.keys()].filter((n) => !inputNames.has(n) && !wrt.has(n)));
  for (const n of nodes) {
    const ins = (n.input ?? []).filter((i) => i);
    if (n.opType === 'Shape' || n.opType === 'Size' || (!RANDOM.has(n.opType!) && (n.domain ?? '') === '' && ins.every((i) => staticNames.has(i)))) {
      for (const o of n.output ?? []) if (o) staticNames.add(o);
    }
  }

  // Forward: which float tensors depend on a wrt tensor.
  const isFloat = (t: string) => { const i = infos.get(t); return !!i && FLOAT_TYPES.has(i.dtype); };
  const active = new Set<string>([...wrt]);
  for (const n of nodes) {
    if (NO_GRADIENT.has(n.opType!) && !n.domain) continue;
    if ((n.input ?? []).some((i) => i && active.has(i))) for (const o of n.output ?? []) if (o && isFloat(o)) active.add(o);
  }
  check(active.has(opts.loss), `gradient: loss '${opts.loss}' does not depend on any of the chosen tensors`);
  // Backward: which of those reach the loss.
  const reaches = new Set<string>([opts.loss]);
  const onPath: NodeProto[] = [];
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k]!;
    if (!(n.output ?? []).some((o) => o && active.has(o) && reaches.has(o))) continue;
    onPath.push(n);
    for (const i of n.input ?? []) if (i && active.has(i)) reaches.add(i);
  }

  const taken = new Set<string>([...available, ...producers.keys()]);
  for (const w of opts.wrt) taken.add(gradName(w));
  const ctx = new GradContext(infos, staticNames, taken, opset);
  const contrib = new Map<string, string[]>();
  const push = (t: string, g: string) => { const l = contrib.get(t); if (l) l.push(g); else contrib.set(t, [g]); };

  push(opts.loss, ctx.filled(lossInfo.dims, lossInfo.dtype, 1));

  for (const n of onPath) {
    const rule = n.domain ? undefined : RULES[n.opType!];
    if (!rule) {
      const op = n.domain ? `${n.domain}.${n.opType}` : n.opType;
      throw new InputError(`gradient: op ${op} (node '${n.name}') is on the gradient path to '${opts.loss}' and has no gradient rule`);
    }
    const gy = (n.output ?? []).map((o) => {
      const parts = o && active.has(o) ? contrib.get(o) : undefined;
      return parts && parts.length ? ctx.sum(parts) : null;
    });
    if (gy.every((g) => g === null)) continue;
    const need = (n.input ?? []).map((i) => !!i && active.has(i) && reaches.has(i));
    const gx = rule(ctx, n, gy, need);
    (n.input ?? []).forEach((i, k) => {
      const g = gx[k];
      if (need[k] && g) push(i, g);
    });
  }

  // Name the wrt gradients; a weight no path reaches gets zeros.
  const rename = new Map<string, string>();
  const producedByCtx = new Set(ctx.nodes.flatMap((n) => n.output ?? []));
  const gradOutputs: ValueInfoProto[] = [];
  for (const w of opts.wrt) {
    const wi = infos.get(w)!;
    const parts = contrib.get(w) ?? [];
    const target = gradName(w);
    if (parts.length === 0) rename.set(ctx.zeros(wi.dims, wi.dtype), target);
    else if (parts.length > 1) ctx.nodes.push({ opType: 'Sum', input: parts, output: [target], name: target, attribute: [] });
    else if (producedByCtx.has(parts[0]!) && !rename.has(parts[0]!) && !opts.wrt.some((x) => x !== w && contrib.get(x)?.includes(parts[0]!))) rename.set(parts[0]!, target);
    else ctx.nodes.push({ opType: 'Identity', input: [parts[0]!], output: [target], name: target, attribute: [] });
    gradOutputs.push(valueInfo(target, wi.dtype, wi.dims));
  }
  const backward = ctx.nodes.map((n) => rename.size === 0 ? n : {
    ...n,
    input: (n.input ?? []).map((i) => rename.get(i) ?? i),
    output: (n.output ?? []).map((o) => rename.get(o) ?? o),
  });

  // Forward nodes that the loss and the backward pass need.
  const needed = new Set<string>([opts.loss, ...(opts.keepOutputs ?? [])]);
  for (const n of backward) for (const i of n.input ?? []) if (i) needed.add(i);
  const forward: NodeProto[] = [];
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k]!;
    if (!(n.output ?? []).some((o) => o && needed.has(o))) continue;
    forward.push(n);
    for (const i of n.input ?? []) if (i) needed.add(i);
  }
  forward.reverse();

  const asInputs = opts.weightsAsInputs ? new Set(opts.wrt.filter((w) => inits.has(w) && !inputNames.has(w))) : new Set<string>();
  const initializer = [...(graph.initializer ?? []).filter((t) => needed.has(t.name!) && !asInputs.has(t.name!)), ...ctx.initializers];
  const input = [
    ...(graph.input ?? []),
    ...[...asInputs].map((w) => valueInfo(w, infos.get(w)!.dtype, infos.get(w)!.dims)),
  ];
  const output = [
    valueInfo(opts.loss, lossInfo.dtype, lossInfo.dims),
    ...gradOutputs,
    ...(opts.keepOutputs ?? []).map((o) => {
      const i = infos.get(o);
      check(i, `gradient: output '${o}' is not a tensor of the graph`);
      return valueInfo(o, i.dtype, i.dims);
    }),
  ];
  if (opset < 16) opset = 16; // ScatterND/ScatterElements reduction; 13..15 ops keep their meaning.
  return onnx.ModelProto.create({
    ...model,
    opsetImport: [...(model.opsetImport ?? []).filter((o) => o.domain && o.domain !== 'ai.onnx'), { domain: '', version: opset }],
    graph: { ...graph, node: [...forward, ...backward], initializer, input, output, valueInfo: (graph.valueInfo ?? []).filter((v) => needed.has(v.name!)) },
  });
}
