/**
 * Cut a decoder graph into segments that run one after another: the prelude
 * (embeddings, attention mask, rotary tables), one segment per decoder block, and
 * the tail (final norm, head). A model of any size then runs with one block's
 * weights in memory, the tensors that cross a cut (hidden states, mask, rotary
 * tables) carried from segment to segment.
 *
 * Works on builder graphs and torch / Optimum exports alike: a node belongs to block
 * i when its name carries the module path (`/model/layers.3/...`) or, failing that,
 * one of its initializers does (`model.layers.3.mlp.up_proj.weight`). Unnamed nodes go
 * as early as their inputs allow, except that nodes reading a block's output and read
 * by no node of that block (the final norm, a Cast between blocks) go with their
 * first reader. Constant nodes (inputs only initializers or other constants) are
 * copied into every segment that reads them, so shapes stay constant for onnxruntime.
 */
import { InputError } from '../errors.ts';
import type { ModelProto, NodeProto, ValueInfoProto } from './proto.ts';

const BLOCK_RE = /(?:^|[./])(?:layers|layer|h|blocks|block|decoder_layers)\.(\d+)(?:[./]|$)/;

export interface SegmentSpec {
  /** 'prelude' (index -1), 'block' (0..blocks-1), 'tail' (index blocks). */
  kind: 'prelude' | 'block' | 'tail';
  index: number;
  /** Nodes in graph order, constant nodes it reads included. */
  nodes: NodeProto[];
  /** Tensors it reads from graph inputs or earlier segments. */
  inputs: string[];
  /** Tensors later segments (or the graph outputs) read from it. */
  outputs: string[];
  /** Initializers its nodes read. */
  initializers: string[];
}

export interface SegmentPlan {
  blocks: number;
  /** prelude, blocks 0..blocks-1, tail; segments[k] has index k-1. */
  segments: SegmentSpec[];
  /** For each carried tensor, the last segment index that reads it (blocks = tail; graph outputs: blocks + 1). */
  lastUse: Map<string, number>;
}

function blockFromName(name: string | null | undefined): number {
  const m = name ? BLOCK_RE.exec(name) : null;
  return m ? Number(m[1]) : -1;
}

function hasSubgraph(n: NodeProto): boolean {
  return (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length > 0);
}

/** Split `model` by decoder block; InputError when it has no recognisable blocks. */
export function planSegments(model: ModelProto): SegmentPlan {
  const g = model.graph;
  if (!g) throw new InputError('model has no graph');
  const nodes = g.node ?? [];
  const inits = new Set((g.initializer ?? []).map((t) => t.name!));
  const graphOutputs = new Set((g.output ?? []).map((o) => o.name!));
  const producer = new Map<string, number>();
  nodes.forEach((n, k) => (n.output ?? []).forEach((o) => o && producer.set(o, k)));

  // Constant nodes: computable from initializers alone.
  const isConst = new Uint8Array(nodes.length);
  nodes.forEach((n, k) => {
    if (hasSubgraph(n)) return;
    const ok = (n.input ?? []).every((i) => !i || inits.has(i) || (producer.has(i) && isConst[producer.get(i)!] === 1));
    if (ok) isConst[k] = 1;
  });

  const named = nodes.map((n) => {
    const b = blockFromName(n.name);
    if (b >= 0) return b;
    for (const i of n.input ?? []) if (inits.has(i)) {
      const bi = blockFromName(i);
      if (bi >= 0) return bi;
    }
    return -1;
  });
  const blocks = Math.max(-1, ...named) + 1;
  if (blocks === 0) throw new InputError('model has no decoder blocks recognisable by name (/model/layers.N/...); it cannot be run block by block');
  const tail = blocks;

  // Earliest segment each node may run in.
  const seg = new Int32Array(nodes.length).fill(-1);
  nodes.forEach((n, k) => {
    if (isConst[k]) return;
    let s = -1;
    for (const i of n.input ?? []) {
      const p = producer.get(i);
      if (p !== undefined && !isConst[p]) s = Math.max(s, seg[p]!);
    }
    if (named[k]! >= 0) {
      if (s > named[k]!) throw new InputError(`node ${n.name} of block ${named[k]} reads a tensor of block ${s}; the graph cannot be cut by block`);
      s = named[k]!;
    }
    seg[k] = s;
  });
  // Unnamed nodes after a block that the block itself does not read move to their first reader.
  const consumers = new Map<number, number[]>();
  nodes.forEach((n, k) => {
    for (const i of n.input ?? []) {
      const p = producer.get(i);
      if (p === undefined) continue;
      let list = consumers.get(p);
      if (!list) consumers.set(p, (list = []));
      list.push(k);
    }
  });
  for (let k = nodes.length - 1; k >= 0; k--) {
    if (isConst[k] || named[k]! >= 0 || seg[k]! < 0) continue;
    let first = (nodes[k]!.output ?? []).some((o) => graphOutputs.has(o)) ? tail : Infinity;
    for (const c of consumers.get(k) ?? []) if (!isConst[c]) first = Math.min(first, seg[c]!);
    if (first === Infinity) first = tail;
    if (first > seg[k]!) seg[k] = first;
  }

  const lastUse = new Map<string, number>();
  for (const o of graphOutputs) lastUse.set(o, tail + 1);
  nodes.forEach((n, k) => {
    if (isConst[k]) return;
    for (const i of n.input ?? []) {
      const p = producer.get(i);
      if (i && !inits.has(i) && (p === undefined || !isConst[p])) lastUse.set(i, Math.max(lastUse.get(i) ?? -2, seg[k]!));
    }
  });

  const segments: SegmentSpec[] = [];
  for (let s = -1; s <= tail; s++) {
    const own = new Set<number>();
    nodes.forEach((_, k) => !isConst[k] && seg[k] === s && own.add(k));
    // Constant nodes read by this segment, transitively.
    const stack = [...own];
    const withConst = new Set(own);
    while (stack.length > 0) {
      const k = stack.pop()!;
      for (const i of nodes[k]!.input ?? []) {
        const p = producer.get(i);
        if (p !== undefined && isConst[p] && !withConst.has(p)) {
          withConst.add(p);
          stack.push(p);
        }
      }
    }
    const segNodes = [...withConst].sort((a, b) => a - b).map((k) => nodes[k]!);
    const inputs = new Set<string>();
    const initNames = new Set<string>();
    for (const k of withConst) {
      for (const i of nodes[k]!.input ?? []) {
        if (!i) continue;
        if (inits.has(i)) initNames.add(i);
        else {
          const p = producer.get(i);
          if (p === undefined || (!withConst.has(p) && !isConst[p])) inputs.add(i);
        }
      }
    }
    const outputs: string[] = [];
    for (const k of own) for (const o of nodes[k]!.output ?? []) if (o && (lastUse.get(o) ?? -2) > s) outputs.push(o);
    segments.push({ kind: s < 0 ? 'prelude' : s === tail ? 'tail' : 'block', index: s, nodes: segNodes, inputs: [...inputs], outputs, initializers: [...initNames] });
  }
  return { blocks, segments, lastUse };
}

/**
 * A model for one segment. Inputs get the element types in `types` (those of the
 * tensors carried in, or the graph's own input declarations); outputs are declared
 * without a type (onnxruntime infers it). Initializers are the model's own tensor
 * objects (possibly still external) unless `initializers` supplies others.
 */
export function segmentModel(model: ModelProto, spec: SegmentSpec, types: ReadonlyMap<string, number>, extraOutputs: ValueInfoProto[] = [], keepOutputs = true): ModelProto {
  const g = model.graph!;
  const declared = new Map((g.input ?? []).map((v) => [v.name!, v]));
  const byName = new Map((g.initializer ?? []).map((t) => [t.name!, t]));
  const input: ValueInfoProto[] = spec.inputs.map((name) => {
    const d = declared.get(name);
    if (d) return d;
    const t = types.get(name);
    if (t === undefined) throw new Error(`segment ${spec.kind} ${spec.index}: no type for carried tensor ${name}`);
    return { name, type: { tensorType: { elemType: t } } };
  });
  const output: ValueInfoProto[] = [...(keepOutputs ? spec.outputs.map((name) => (g.output ?? []).find((o) => o.name === name) ?? { name }) : []), ...extraOutputs];
  const copy = Object.assign(Object.create(Object.getPrototypeOf(model)), model) as ModelProto;
  copy.graph = {
    name: `${g.name ?? 'graph'}_${spec.kind}${spec.kind === 'block' ? spec.index : ''}`,
    node: spec.nodes,
    initializer: spec.initializers.map((n) => byName.get(n)!),
    input,
    output,
    valueInfo: [],
  };
  return copy;
}
