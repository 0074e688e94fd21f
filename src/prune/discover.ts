/**
 * Find the prunable linear layers of a decoder graph and read/write their weights in
 * PyTorch layout ([out, in]) whatever the storage: MatMul B initializers are [in, out]
 * (torch.onnx.export transposes them, often under generated names like
 * `onnx::MatMul_381`), Gemm with transB=1 keeps [out, in], a MatMul fed by
 * Transpose(W) keeps [out, in] too. Names follow the module path, taken from the
 * initializer name when it is a state_dict name, else from the node name
 * (`/model/layers.0/self_attn/q_proj/MatMul` -> `model.layers.0.self_attn.q_proj`).
 */
import { DataType, type ModelProto, type NodeProto, type TensorProto } from '../onnx/proto.ts';
import { getAttr } from '../onnx/graph-build.ts';
import { float32ToBytes, tensorDims, tensorToFloat32, transposeInto } from '../onnx/tensor.ts';
import { findInitializer, indexGraph } from '../onnx/graph-edit.ts';

export interface PrunableLayer {
  /** PyTorch module path, e.g. model.layers.0.self_attn.q_proj */
  name: string;
  nodeName: string;
  /** 'Gather' only for embeddings (includeEmbeddings). */
  opType: 'MatMul' | 'Gemm' | 'Gather';
  /** The initializer holding the weight. */
  initializer: string;
  /** The activation tensor the layer multiplies (token ids for an embedding). */
  input: string;
  out: number;
  in: number;
  /** true when the initializer is stored [in, out] */
  storedTransposed: boolean;
  /** decoder block index, -1 outside blocks (lm_head, embeddings) */
  block: number;
  /** ONNX data type of the initializer (FLOAT or FLOAT16) */
  dataType: number;
}

export interface DiscoverOptions {
  includeHead?: boolean;
  includeEmbeddings?: boolean;
}

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16]);
const BLOCK_RE = /(?:^|\.)(?:layers|layer|h|blocks|block|decoder_layers)\.(\d+)(?:\.|$)/;

function isFloatMatrix(t: TensorProto | undefined): t is TensorProto {
  return !!t && FLOAT_TYPES.has(t.dataType ?? 0) && tensorDims(t).length === 2;
}

/** Module path from a node name `/a/b.0/c/Op` -> `a.b.0.c` (null if the name has no path). */
function moduleFromNodeName(nodeName: string): string | null {
  if (!nodeName.startsWith('/')) return null;
  const parts = nodeName.split('/').filter(Boolean);
  if (parts.length < 2) return null;
  return parts.slice(0, -1).join('.');
}

/** Module path from a state_dict-style initializer name (`x.y.weight` -> `x.y`). */
function moduleFromInitializer(name: string): string | null {
  if (name.startsWith('onnx::') || !name.endsWith('.weight')) return null;
  return name.slice(0, -'.weight'.length);
}

function blockOf(name: string): number {
  const m = BLOCK_RE.exec(name);
  return m ? Number(m[1]) : -1;
}

function isHead(name: string, n: NodeProto, graphOutputs: Set<string>): boolean {
  return /(^|\.)lm_head$/.test(name) || (n.output ?? []).some((o) => o === 'logits' || (graphOutputs.has(o) && /logits/.test(o)));
}

/**
 * Prunable layers in graph order: MatMul/Gemm nodes whose weight is a 2-D FLOAT or
 * FLOAT16 initializer inside a decoder block; lm_head and embeddings on request.
 */
export function discoverLayers(model: ModelProto, opts: DiscoverOptions = {}): PrunableLayer[] {
  const idx = indexGraph(model);
  const layers: PrunableLayer[] = [];
  const used = new Map<string, number>();
  const uniqueName = (name: string): string => {
    const k = used.get(name) ?? 0;
    used.set(name, k + 1);
    return k === 0 ? name : `${name}_${k}`;
  };

  for (const n of model.graph?.node ?? []) {
    const op = n.opType;
    const inputs = n.input ?? [];
    const nodeName = n.name ?? '';
    let init: TensorProto | undefined;
    let storedTransposed: boolean;
    let input: string;
    if (op === 'MatMul' || op === 'Gemm') {
      if (op === 'Gemm' && Number(getAttr(n, 'transA') ?? 0) !== 0) continue;
      input = inputs[0] ?? '';
      const b = inputs[1] ?? '';
      storedTransposed = op === 'MatMul' || Number(getAttr(n, 'transB') ?? 0) === 0;
      init = idx.initializers.get(b);
      if (!init) {
        // MatMul(x, Transpose(W)) with W [out, in], as some exporters write it.
        const p = idx.producers.get(b);
        const perm = p && p.opType === 'Transpose' ? getAttr(p, 'perm') : undefined;
        if (p && p.opType === 'Transpose' && (perm === undefined || (Array.isArray(perm) && perm[0] === 1 && perm[1] === 0))) {
          init = idx.initializers.get(p.input?.[0] ?? '');
          storedTransposed = !storedTransposed;
        }
      }
      if (!isFloatMatrix(init) || idx.initializers.has(input)) continue;
    } else if (op === 'Gather' && opts.includeEmbeddings) {
      init = idx.initializers.get(inputs[0] ?? '');
      input = inputs[1] ?? '';
      storedTransposed = false;
      if (!isFloatMatrix(init) || Number(getAttr(n, 'axis') ?? 0) !== 0) continue;
      const looksEmbedding = input === 'input_ids' || /embed|wte/.test(`${nodeName} ${init.name}`);
      if (!looksEmbedding) continue;
    } else {
      continue;
    }
    const initName = init.name ?? '';
    const name = moduleFromInitializer(initName) ?? moduleFromNodeName(nodeName) ?? (nodeName || initName);
    const block = blockOf(name);
    if (op === 'Gather') {
      if (block >= 0) continue;
    } else if (block < 0) {
      if (!(opts.includeHead && isHead(name, n, idx.outputs))) continue;
    }
    const [d0, d1] = tensorDims(init) as [number, number];
    layers.push({
      name: uniqueName(name),
      nodeName,
      opType: op as PrunableLayer['opType'],
      initializer: initName,
      input,
      out: storedTransposed ? d1 : d0,
      in: storedTransposed ? d0 : d1,
      storedTransposed,
      block,
      dataType: init.dataType!,
    });
  }
  return layers;
}

function layerTensor(model: ModelProto, layer: PrunableLayer): TensorProto {
  const t = findInitializer(model, layer.initializer);
  if (!t) throw new Error(`layer ${layer.name}: initializer ${layer.initializer} not in the model`);
  return t;
}

/** A model holding just these tensors, so readLayerWeight / writeLayerWeight work on a block's weights. */
export function viewOf(tensors: TensorProto[]): ModelProto {
  return { graph: { initializer: tensors } } as ModelProto;
}

/** The layer's weight in PyTorch layout [out, in], as float32 (FLOAT16 is widened). */
export function readLayerWeight(model: ModelProto, layer: PrunableLayer): Float32Array {
  const stored = tensorToFloat32(layerTensor(model, layer));
  return layer.storedTransposed ? transposeInto(stored, layer.in, layer.out) : stored;
}

/**
 * Store a PyTorch-layout [out, in] weight into the layer's initializer, in its own
 * layout and data type. The tensor gets new bytes (never written in place), so models
 * sharing tensor bytes through cloneModel stay independent.
 */
export function writeLayerWeight(model: ModelProto, layer: PrunableLayer, w: Float32Array): void {
  if (w.length !== layer.out * layer.in) throw new Error(`layer ${layer.name}: ${w.length} values for [${layer.out}, ${layer.in}]`);
  const t = layerTensor(model, layer);
  const stored = layer.storedTransposed ? transposeInto(w, layer.out, layer.in) : w;
  t.rawData = float32ToBytes(stored, t.dataType ?? DataType.FLOAT);
  t.floatData = [];
  t.int32Data = [];
  delete t.dataLocation;
  t.externalData = [];
}
