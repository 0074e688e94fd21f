/**
 * Graph surgery on ModelProto objects: lookups (initializers, producers, consumers),
 * extra outputs for instrumentation, and turning initializers into plain graph inputs
 * so a session can be fed replacement weights (onnxruntime-node ignores feeds whose
 * name is an initializer, even when that initializer is also listed as an input).
 */
import { DataType, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from './proto.ts';
import { valueInfo } from './graph-build.ts';
import { tensorDims } from './tensor.ts';

function graphOf(model: ModelProto): GraphProto {
  if (!model.graph) throw new Error('model has no graph');
  return model.graph;
}

/** Every tensor held in a graph (initializers, sparse parts, node attributes, subgraphs). */
export function* allTensors(graph: GraphProto): Generator<TensorProto> {
  for (const t of graph.initializer ?? []) yield t;
  for (const s of graph.sparseInitializer ?? []) {
    if (s.values) yield s.values;
    if (s.indices) yield s.indices;
  }
  for (const n of graph.node ?? []) {
    for (const a of n.attribute ?? []) {
      if (a.t) yield a.t;
      for (const t of a.tensors ?? []) yield t;
      if (a.g) yield* allTensors(a.g);
      for (const g of a.graphs ?? []) yield* allTensors(g);
    }
  }
}

/** The initializer with this name, if any. */
export function findInitializer(model: ModelProto, name: string): TensorProto | undefined {
  return (graphOf(model).initializer ?? []).find((t) => t.name === name);
}

/** Name-indexed views of a graph, for passes that do many lookups (O(1) each). */
export interface GraphIndex {
  initializers: Map<string, TensorProto>;
  producers: Map<string, NodeProto>;
  consumers: Map<string, NodeProto[]>;
  inputs: Set<string>;
  outputs: Set<string>;
}

export function indexGraph(model: ModelProto): GraphIndex {
  const g = graphOf(model);
  const initializers = new Map<string, TensorProto>();
  for (const t of g.initializer ?? []) initializers.set(t.name ?? '', t);
  const producers = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  for (const n of g.node ?? []) {
    for (const o of n.output ?? []) if (o) producers.set(o, n);
    for (const i of n.input ?? []) {
      if (!i) continue;
      let list = consumers.get(i);
      if (!list) consumers.set(i, (list = []));
      if (!list.includes(n)) list.push(n);
    }
  }
  return {
    initializers,
    producers,
    consumers,
    inputs: new Set((g.input ?? []).map((v) => v.name ?? '')),
    outputs: new Set((g.output ?? []).map((v) => v.name ?? '')),
  };
}

/** The node that outputs this tensor (undefined for graph inputs and initializers). */
export function producerOf(model: ModelProto, tensor: string): NodeProto | undefined {
  return (graphOf(model).node ?? []).find((n) => (n.output ?? []).includes(tensor));
}

/** Nodes that read this tensor, in graph order. */
export function consumersOf(model: ModelProto, tensor: string): NodeProto[] {
  return (graphOf(model).node ?? []).filter((n) => (n.input ?? []).includes(tensor));
}

/** Element type and shape of a graph input/output/value_info, when declared. */
export function findValueInfo(model: ModelProto, name: string): ValueInfoProto | undefined {
  const g = graphOf(model);
  for (const list of [g.input, g.output, g.valueInfo]) {
    const v = (list ?? []).find((x) => x.name === name);
    if (v) return v;
  }
  return undefined;
}

/** Declared dims of a value info: numbers for fixed dims, strings for symbolic ones, null if unknown. */
export function valueInfoDims(v: ValueInfoProto): Array<number | string | null> | null {
  const shape = v.type?.tensorType?.shape;
  if (!shape) return null;
  return (shape.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue != null && Number(d.dimValue) > 0 ? Number(d.dimValue) : null));
}

/**
 * Make intermediate tensors graph outputs (instrumentation: activations, statistics).
 * Names already output are skipped. Shape is left unspecified; onnxruntime infers it.
 */
export function addOutputs(model: ModelProto, names: string[], elemType: number = DataType.FLOAT): void {
  const g = graphOf(model);
  g.output = g.output ?? [];
  const have = new Set(g.output.map((o) => o.name));
  for (const name of names) {
    if (have.has(name)) continue;
    g.output.push({ name, type: { tensorType: { elemType } } });
    have.add(name);
  }
}

/**
 * Replace initializers by plain graph inputs of the same type and shape, and return
 * the removed tensors (the caller usually feeds their data by default).
 */
export function initializersToInputs(model: ModelProto, names: string[]): TensorProto[] {
  const g = graphOf(model);
  const wanted = new Set(names);
  const removed = new Map<string, TensorProto>();
  const kept: TensorProto[] = [];
  for (const t of g.initializer ?? []) {
    if (wanted.has(t.name ?? '')) removed.set(t.name!, t);
    else kept.push(t);
  }
  const missing = names.filter((n) => !removed.has(n));
  if (missing.length > 0) throw new Error(`not initializers of this model: ${missing.join(', ')}`);
  g.initializer = kept;
  // IR < 4 models list initializers among the inputs too; drop those entries first.
  g.input = (g.input ?? []).filter((v) => !wanted.has(v.name ?? ''));
  for (const name of names) {
    const t = removed.get(name)!;
    g.input.push(valueInfo(name, t.dataType ?? DataType.FLOAT, tensorDims(t)));
  }
  return names.map((n) => removed.get(n)!);
}

/**
 * A copy of the model whose graph lists (nodes, initializers, inputs, outputs) and
 * tensor objects can be edited freely, while tensor bytes are shared with the original.
 * Replace a tensor's rawData rather than writing into it to keep the original intact.
 */
export function cloneModel(model: ModelProto): ModelProto {
  const g = graphOf(model);
  const copy = Object.assign(Object.create(Object.getPrototypeOf(model)), model) as ModelProto;
  copy.graph = {
    ...g,
    node: (g.node ?? []).map((n) => ({ ...n, input: [...(n.input ?? [])], output: [...(n.output ?? [])], attribute: [...(n.attribute ?? [])] })),
    initializer: (g.initializer ?? []).map((t) => ({ ...t })),
    input: [...(g.input ?? [])],
    output: [...(g.output ?? [])],
    valueInfo: [...(g.valueInfo ?? [])],
  };
  return copy;
}

/** Total bytes held by float initializers (the model's weights) and their element count. */
export function initializerStats(model: ModelProto): { bytes: number; params: number } {
  let bytes = 0;
  let params = 0;
  for (const t of graphOf(model).initializer ?? []) {
    const n = tensorDims(t).reduce((a, b) => a * b, 1);
    const size = t.dataType === DataType.FLOAT16 || t.dataType === DataType.BFLOAT16 ? 2 : t.dataType === DataType.DOUBLE ? 8 : t.dataType === DataType.FLOAT ? 4 : 0;
    if (size === 0) continue;
    params += n;
    bytes += n * size;
  }
  return { bytes, params };
}
