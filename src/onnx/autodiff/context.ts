/**
 * What a gradient rule sees while the reverse sweep runs: the probed shape of every
 * forward tensor, and helpers that append backward nodes and cached constants. Rules
 * return gradients with exactly the shape of the input they belong to, so the sweep can
 * add up fan-out contributions without any further shape reasoning.
 */
import { DataType, type NodeProto, type TensorProto } from '../proto.ts';
import { node, type AttrValue } from '../graph-build.ts';
import { floatTensor, int64Tensor, numel } from '../tensor.ts';
import { InputError } from '../../errors.ts';
import type { TensorInfo } from './shape-probe.ts';

/** Gradient rule: given output gradients (null = no gradient flows there) return one per input. */
export type GradRule = (ctx: GradContext, n: NodeProto, gy: Array<string | null>, need: boolean[]) => Array<string | null>;

function scalarTensor(name: string, v: number, dtype: number, dims: number[] = []): TensorProto {
  const n = numel(dims);
  if (dtype === DataType.DOUBLE) {
    const a = new Float64Array(n).fill(v);
    return { name, dims, dataType: dtype, rawData: new Uint8Array(a.buffer) };
  }
  if (dtype === DataType.FLOAT || dtype === DataType.FLOAT16) return floatTensor(name, dims, new Float32Array(n).fill(v), dtype);
  throw new InputError(`gradient: float data type ${dtype} is not supported (use float32, float16 or float64)`);
}

export class GradContext {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private counter = 0;
  private readonly consts = new Map<string, string>();

  constructor(
    private readonly infos: Map<string, TensorInfo>,
    /** Tensors whose value is fixed once the input shapes are fixed (constants, shape arithmetic). */
    private readonly staticNames: ReadonlySet<string>,
    private readonly taken: Set<string>,
    readonly opset: number,
  ) {}

  info(name: string): TensorInfo {
    const i = this.infos.get(name);
    if (!i) throw new Error(`gradient: no probed shape for tensor '${name}'`);
    return i;
  }

  dims(name: string): number[] {
    return this.info(name).dims;
  }

  dtype(name: string): number {
    return this.info(name).dtype;
  }

  /** Values of a tensor that is constant for the fixed input shapes, else undefined. */
  staticValues(name: string): number[] | undefined {
    if (!name || !this.staticNames.has(name)) return undefined;
    return this.infos.get(name)?.values;
  }

  /** Values that must be static (axes, slice bounds); a clear error otherwise. */
  requireStatic(name: string, n: NodeProto, what: string): number[] {
    const v = this.staticValues(name);
    if (!v) throw new InputError(`gradient: ${n.opType} node '${n.name}': ${what} ('${name}') must be constant for fixed input shapes`);
    return v;
  }

  fresh(base: string): string {
    let name: string;
    do name = `grad/${base}_${this.counter++}`; while (this.taken.has(name));
    this.taken.add(name);
    return name;
  }

  /** Append a node; returns its output names. Output dims are recorded when given. */
  emitN(op: string, inputs: string[], nOut: number, attrs: Record<string, AttrValue> = {}): string[] {
    const outs = Array.from({ length: nOut }, () => this.fresh(op));
    this.nodes.push(node(op, inputs, outs, outs[0], attrs));
    return outs;
  }

  emit(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    return this.emitN(op, inputs, 1, attrs)[0]!;
  }

  /** Record the shape of an emitted tensor so later helpers may ask for it. */
  note(name: string, dims: number[], dtype: number): string {
    this.infos.set(name, { dims, dtype });
    return name;
  }

  /** A cached INT64 constant (1-D unless scalar). */
  ints(values: number[], scalar = false): string {
    const key = `i:${scalar ? 's' : 'v'}:${values.join(',')}`;
    let name = this.consts.get(key);
    if (!name) {
      name = this.fresh('const');
      this.initializers.push(int64Tensor(name, scalar ? [] : [values.length], values));
      this.consts.set(key, name);
    }
    return name;
  }

  /** A cached scalar constant of a float type. */
  scalar(v: number, dtype: number): string {
    const key = `f:${dtype}:${v}`;
    let name = this.consts.get(key);
    if (!name) {
      name = this.fresh('const');
      this.initializers.push(scalarTensor(name, v, dtype));
      this.consts.set(key, name);
    }
    return name;
  }

  /** A zero tensor of the given shape (ORT folds ConstantOfShape of a constant). */
  zeros(dims: number[], dtype: number): string {
    return this.filled(dims, dtype, 0);
  }

  filled(dims: number[], dtype: number, v: number): string {
    const value = scalarTensor('value', v, dtype, [1]);
    return this.emit('ConstantOfShape', [this.ints(dims)], { value });
  }

  reshape(x: string, from: number[], to: number[]): string {
    if (from.length === to.length && from.every((d, i) => d === to[i])) return x;
    return this.emit('Reshape', [x, this.ints(to)]);
  }

  /** Sum a broadcast gradient of shape `from` back to shape `to` (numpy broadcasting rules). */
  reduceTo(g: string, from: number[], to: number[]): string {
    if (from.length === to.length && from.every((d, i) => d === to[i])) return g;
    const lead = from.length - to.length;
    if (lead < 0) throw new Error(`gradient: cannot reduce [${from}] to [${to}]`);
    const axes: number[] = [];
    for (let i = 0; i < from.length; i++) {
      if (i < lead || (to[i - lead] === 1 && from[i] !== 1)) axes.push(i);
    }
    let r = g;
    let rdims = from;
    if (axes.length) {
      r = this.emit('ReduceSum', [g, this.ints(axes)], { keepdims: 1 });
      rdims = from.map((d, i) => (axes.includes(i) ? 1 : d));
    }
    return this.reshape(r, rdims, to);
  }

  /** Sum several same-shape gradient contributions. */
  sum(parts: string[]): string {
    if (parts.length === 1) return parts[0]!;
    return this.emit('Sum', parts);
  }
}
