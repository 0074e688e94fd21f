/**
 * One finite-difference test per supported op: each op runs on seeded random inputs,
 * the loss is sum(y * R) for a random R (so every output element matters), and the
 * emitted gradient of every float input must match central differences.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { node, makeModel, valueInfo, DataType } from '../src/onnx/graph-build.ts';
import { floatTensor, int64Tensor } from '../src/onnx/tensor.ts';
import type { NodeProto, TensorProto } from '../src/onnx/proto.ts';
import { i64, type ort } from '../src/onnx/session.ts';
import { probeTensors } from '../src/onnx/autodiff/shape-probe.ts';
import { finiteDifferenceCheck, fdMismatches } from '../src/onnx/autodiff/fd-check.ts';

type FloatSpec = number[] | { dims: number[]; kind?: 'positive' | 'spread' | 'uniform'; data?: number[] };

interface Case {
  nodes: NodeProto[];
  /** Float initializers; differentiated unless listed in `fixed`. */
  floats: Record<string, FloatSpec>;
  fixed?: string[];
  /** INT64 constant initializers. */
  ints?: Record<string, number[] | { dims: number[]; values: number[] }>;
  /** INT64 graph inputs fed at run time. */
  intInputs?: Record<string, { dims: number[]; values: number[] }>;
  out?: string;
  eps?: number;
  rtol?: number;
}

function normal(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(rng() + 1e-12)) * Math.cos(2 * Math.PI * rng());
}

function makeFloat(name: string, spec: FloatSpec, rng: () => number): TensorProto {
  const s = Array.isArray(spec) ? { dims: spec } : spec;
  const n = s.dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (s.data) data[i] = s.data[i]!;
    else if (s.kind === 'positive') data[i] = 0.5 + 1.5 * rng();
    // Distinct values far enough apart that max/min/abs/relu stay put under +-eps.
    else if (s.kind === 'spread') data[i] = (i - n / 2 + 0.5) * 0.37 * (rng() < 0.5 ? 1 : -1) + 0.05 + 0.003 * n;
    else if (s.kind === 'uniform') data[i] = rng() * 2 - 1;
    else data[i] = normal(rng);
  }
  if (s.kind === 'spread') {
    // Shuffle so the ordering is not trivially monotone.
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [data[i], data[j]] = [data[j]!, data[i]!];
    }
  }
  return floatTensor(name, s.dims, data);
}

async function checkCase(c: Case, seed = 'ops'): Promise<void> {
  const rng = seedrandom(seed);
  const initializer: TensorProto[] = Object.entries(c.floats).map(([k, v]) => makeFloat(k, v, rng));
  for (const [k, v] of Object.entries(c.ints ?? {})) {
    const s = Array.isArray(v) ? { dims: [v.length], values: v } : v;
    initializer.push(int64Tensor(k, s.dims, s.values));
  }
  const feeds: Record<string, ort.Tensor> = {};
  const input = Object.entries(c.intInputs ?? {}).map(([k, v]) => {
    feeds[k] = i64(v.values, v.dims);
    return valueInfo(k, DataType.INT64, v.dims);
  });
  const out = c.out ?? 'y';
  const base = makeModel({ name: 'op', node: c.nodes, initializer, input, output: [{ name: out }] });
  const yInfo = (await probeTensors(base, feeds)).get(out)!;
  const r = makeFloat('R', yInfo.dims, rng);
  const model = makeModel({
    name: 'op',
    node: [...c.nodes, node('Mul', [out, 'R'], ['yr']), node('ReduceSum', ['yr'], ['loss'], undefined, { keepdims: 0 })],
    initializer: [...initializer, r],
    input,
    output: [{ name: 'loss' }],
  });
  const wrt = Object.keys(c.floats).filter((k) => !(c.fixed ?? []).includes(k));
  const pts = await finiteDifferenceCheck(model, { loss: 'loss', wrt, feeds, eps: c.eps ?? 1e-2 });
  assert.ok(pts.length > 0);
  const bad = fdMismatches(pts, c.rtol ?? 2e-2);
  assert.deepEqual(bad, [], `gradient mismatches: ${JSON.stringify(bad.slice(0, 5))}`);
  // The check must be able to fail: some gradient is materially non-zero.
  assert.ok(pts.some((p) => Math.abs(p.numeric) > 1e-3), 'all gradients vanish; the test would not catch a wrong rule');
}

const n1 = (op: string, inputs: string[], attrs: Record<string, never | number | number[] | string> = {}): NodeProto[] => [node(op, inputs, ['y'], undefined, attrs as never)];

const cases: Record<string, Case> = {
  'Add (broadcast)': { nodes: n1('Add', ['a', 'b']), floats: { a: [2, 3, 4], b: [3, 1] } },
  'Sub (broadcast)': { nodes: n1('Sub', ['a', 'b']), floats: { a: [2, 1, 4], b: [3, 4] } },
  'Mul (broadcast)': { nodes: n1('Mul', ['a', 'b']), floats: { a: [2, 3, 4], b: [4] } },
  'Mul (x*x)': { nodes: n1('Mul', ['a', 'a']), floats: { a: [3, 4] } },
  'Div (broadcast)': { nodes: n1('Div', ['a', 'b']), floats: { a: [2, 3, 4], b: { dims: [3, 1], kind: 'positive' } } },
  Neg: { nodes: n1('Neg', ['a']), floats: { a: [3, 4] } },
  'Pow (constant exponent 2)': { nodes: n1('Pow', ['a', 'e']), floats: { a: [3, 4], e: { dims: [], data: [2] } }, fixed: ['e'] },
  'Pow (constant exponent 1.5)': { nodes: n1('Pow', ['a', 'e']), floats: { a: { dims: [3, 4], kind: 'positive' }, e: { dims: [], data: [1.5] } }, fixed: ['e'] },
  'Pow (both inputs)': { nodes: n1('Pow', ['a', 'e']), floats: { a: { dims: [3, 4], kind: 'positive' }, e: { dims: [4], kind: 'uniform' } } },
  Sqrt: { nodes: n1('Sqrt', ['a']), floats: { a: { dims: [3, 4], kind: 'positive' } } },
  Reciprocal: { nodes: n1('Reciprocal', ['a']), floats: { a: { dims: [3, 4], kind: 'positive' } } },
  Exp: { nodes: n1('Exp', ['a']), floats: { a: { dims: [3, 4], kind: 'uniform' } } },
  Log: { nodes: n1('Log', ['a']), floats: { a: { dims: [3, 4], kind: 'positive' } } },
  Sigmoid: { nodes: n1('Sigmoid', ['a']), floats: { a: [3, 4] } },
  Tanh: { nodes: n1('Tanh', ['a']), floats: { a: [3, 4] } },
  Sin: { nodes: n1('Sin', ['a']), floats: { a: [3, 4] } },
  Cos: { nodes: n1('Cos', ['a']), floats: { a: [3, 4] } },
  Abs: { nodes: n1('Abs', ['a']), floats: { a: { dims: [3, 4], kind: 'spread' } } },
  Relu: { nodes: n1('Relu', ['a']), floats: { a: { dims: [3, 4], kind: 'spread' } } },
  LeakyRelu: { nodes: n1('LeakyRelu', ['a'], { alpha: { float: 0.2 } as never }), floats: { a: { dims: [3, 4], kind: 'spread' } } },
  Erf: { nodes: n1('Erf', ['a']), floats: { a: [3, 4] } },
  Softplus: { nodes: n1('Softplus', ['a']), floats: { a: [3, 4] } },
  'Max (broadcast)': { nodes: n1('Max', ['a', 'b']), floats: { a: { dims: [3, 4], kind: 'spread' }, b: { dims: [4], kind: 'spread' } } },
  'Min (broadcast)': { nodes: n1('Min', ['a', 'b']), floats: { a: { dims: [3, 4], kind: 'spread' }, b: { dims: [4], kind: 'spread' } } },
  'Sum (3 inputs, broadcast)': { nodes: n1('Sum', ['a', 'b', 'c']), floats: { a: [2, 3], b: [3], c: [2, 1] } },
  'Mean (2 inputs)': { nodes: n1('Mean', ['a', 'b']), floats: { a: [2, 3], b: [2, 3] } },
  Identity: { nodes: n1('Identity', ['a']), floats: { a: [3, 4] } },
  'Cast (float -> double -> float)': {
    nodes: [node('Cast', ['a'], ['d'], undefined, { to: DataType.DOUBLE }), node('Mul', ['d', 'd'], ['d2']), node('Cast', ['d2'], ['y'], undefined, { to: DataType.FLOAT })],
    floats: { a: [3, 4] },
  },
  Clip: {
    nodes: n1('Clip', ['a', 'lo', 'hi']),
    floats: { a: { dims: [3, 4], kind: 'spread' }, lo: { dims: [], data: [-0.6] }, hi: { dims: [], data: [0.7] } },
    fixed: ['lo', 'hi'],
  },
  'Where (broadcast branches)': {
    nodes: [node('Greater', ['a', 'z'], ['c']), node('Where', ['c', 'a', 'b'], ['y'])],
    floats: { a: { dims: [3, 4], kind: 'spread' }, b: [4], z: { dims: [], data: [0] } },
    fixed: ['z'],
  },
  Reshape: { nodes: n1('Reshape', ['a', 's']), floats: { a: [2, 3, 4] }, ints: { s: [4, -1] } },
  Flatten: { nodes: n1('Flatten', ['a'], { axis: 2 }), floats: { a: [2, 3, 4] } },
  Squeeze: { nodes: n1('Squeeze', ['a', 'ax']), floats: { a: [2, 1, 4] }, ints: { ax: [1] } },
  Unsqueeze: { nodes: n1('Unsqueeze', ['a', 'ax']), floats: { a: [2, 4] }, ints: { ax: [0, 2] } },
  Transpose: { nodes: n1('Transpose', ['a'], { perm: [2, 0, 1] }), floats: { a: [2, 3, 4] } },
  'Transpose (default perm)': { nodes: n1('Transpose', ['a']), floats: { a: [2, 3, 4] } },
  Expand: { nodes: n1('Expand', ['a', 's']), floats: { a: [3, 1] }, ints: { s: [2, 3, 4] } },
  Concat: { nodes: n1('Concat', ['a', 'b', 'c'], { axis: 1 }), floats: { a: [2, 1, 3], b: [2, 2, 3], c: [2, 3, 3] } },
  'Split (one output unused)': {
    nodes: [node('Split', ['a', 'sp'], ['p', 'q', 'r'], undefined, { axis: 1 }), node('Mul', ['p', 'r'], ['y'])],
    floats: { a: [2, 7] },
    ints: { sp: [3, 1, 3] },
  },
  'Slice (step 1)': { nodes: n1('Slice', ['a', 's', 'e', 'ax']), floats: { a: [3, 5, 4] }, ints: { s: [1, -3], e: [3, 100], ax: [0, 1] } },
  'Slice (steps 2 and -1)': { nodes: n1('Slice', ['a', 's', 'e', 'ax', 'st']), floats: { a: [3, 7] }, ints: { s: [0, -2], e: [3, 0], ax: [0, 1], st: [2, -1] } },
  'Slice (step -2)': { nodes: n1('Slice', ['a', 's', 'e', 'ax', 'st']), floats: { a: [9, 2] }, ints: { s: [7], e: [-100], ax: [0], st: [-2] } },
  'Gather (axis 0, repeated runtime indices)': {
    nodes: n1('Gather', ['a', 'ids']),
    floats: { a: [5, 3] },
    intInputs: { ids: { dims: [2, 3], values: [0, 4, 4, 1, 0, 4] } },
  },
  'Gather (axis 1, negative constant indices)': { nodes: n1('Gather', ['a', 'ids'], { axis: 1 }), floats: { a: [2, 4, 3] }, ints: { ids: [-1, 1, -1] } },
  'Gather (scalar index)': { nodes: n1('Gather', ['a', 'ids'], { axis: 1 }), floats: { a: [2, 4, 3] }, ints: { ids: { dims: [], values: [2] } } },
  GatherElements: {
    nodes: n1('GatherElements', ['a', 'ids'], { axis: 1 }),
    floats: { a: [2, 4] },
    intInputs: { ids: { dims: [2, 3], values: [3, 3, 0, 1, 2, 1] } },
  },
  'Trilu (lower, k=1)': { nodes: n1('Trilu', ['a', 'k'], { upper: 0 }), floats: { a: [2, 4, 4] }, ints: { k: { dims: [], values: [1] } } },
  'Trilu (upper)': { nodes: n1('Trilu', ['a']), floats: { a: [3, 4] } },
  Tile: { nodes: n1('Tile', ['a', 'r']), floats: { a: [2, 3] }, ints: { r: [2, 3] } },
  'Pad (constant)': { nodes: n1('Pad', ['a', 'p']), floats: { a: [2, 3] }, ints: { p: [1, 0, 0, 2] } },
  'MatMul (2-D)': { nodes: n1('MatMul', ['a', 'b']), floats: { a: [3, 4], b: [4, 5] } },
  'MatMul (3-D x 2-D weight)': { nodes: n1('MatMul', ['a', 'b']), floats: { a: [2, 3, 4], b: [4, 5] } },
  'MatMul (batched 4-D)': { nodes: n1('MatMul', ['a', 'b']), floats: { a: [2, 2, 3, 4], b: [2, 2, 4, 3] } },
  'MatMul (broadcast batch)': { nodes: n1('MatMul', ['a', 'b']), floats: { a: [2, 1, 3, 4], b: [3, 4, 2] } },
  'MatMul (1-D x 2-D)': { nodes: n1('MatMul', ['a', 'b']), floats: { a: [4], b: [4, 3] } },
  'MatMul (3-D x 1-D)': { nodes: n1('MatMul', ['a', 'b']), floats: { a: [2, 3, 4], b: [4] } },
  'MatMul (2-D x 3-D)': { nodes: n1('MatMul', ['a', 'b']), floats: { a: [3, 4], b: [2, 4, 5] } },
  Gemm: { nodes: n1('Gemm', ['a', 'b', 'c']), floats: { a: [3, 4], b: [4, 5], c: [5] } },
  'Gemm (transA, transB, alpha, beta)': {
    nodes: n1('Gemm', ['a', 'b', 'c'], { transA: 1, transB: 1, alpha: { float: 0.7 } as never, beta: { float: 1.3 } as never }),
    floats: { a: [4, 3], b: [5, 4], c: [3, 1] },
  },
  'Gemm (transA only)': { nodes: n1('Gemm', ['a', 'b'], { transA: 1 }), floats: { a: [4, 3], b: [4, 5] } },
  'Gemm (transB only)': { nodes: n1('Gemm', ['a', 'b', 'c'], { transB: 1 }), floats: { a: [3, 4], b: [5, 4], c: [3, 5] } },
  'ReduceSum (axes input, keepdims 0)': { nodes: n1('ReduceSum', ['a', 'ax'], { keepdims: 0 }), floats: { a: [2, 3, 4] }, ints: { ax: [0, 2] } },
  'ReduceSum (all axes)': { nodes: n1('ReduceSum', ['a']), floats: { a: [2, 3, 4] } },
  'ReduceMean (axes attribute)': { nodes: n1('ReduceMean', ['a'], { axes: [-1] }), floats: { a: [2, 3, 4] } },
  'ReduceMean (all, keepdims 0)': { nodes: n1('ReduceMean', ['a'], { keepdims: 0 }), floats: { a: [2, 3, 4] } },
  ReduceMax: { nodes: n1('ReduceMax', ['a'], { axes: [1] }), floats: { a: { dims: [2, 3, 4], kind: 'spread' } } },
  ReduceMin: { nodes: n1('ReduceMin', ['a'], { axes: [0], keepdims: 0 }), floats: { a: { dims: [2, 3, 4], kind: 'spread' } } },
  ReduceSumSquare: { nodes: n1('ReduceSumSquare', ['a'], { axes: [1] }), floats: { a: [2, 3, 4] } },
  ReduceL2: { nodes: n1('ReduceL2', ['a'], { axes: [2] }), floats: { a: [2, 3, 4] } },
  'Softmax (last axis)': { nodes: n1('Softmax', ['a']), floats: { a: [2, 3, 5] } },
  'Softmax (axis 1)': { nodes: n1('Softmax', ['a'], { axis: 1 }), floats: { a: [2, 3, 5] } },
  LogSoftmax: { nodes: n1('LogSoftmax', ['a'], { axis: -1 }), floats: { a: [2, 3, 5] } },
  'SoftmaxCrossEntropyLoss (mean, ignore_index, runtime labels)': {
    nodes: [node('SoftmaxCrossEntropyLoss', ['a', 'lab'], ['y', 'lp'], undefined, { reduction: 'mean', ignore_index: -100 })],
    floats: { a: [5, 4] },
    intInputs: { lab: { dims: [5], values: [3, -100, 0, 3, 1] } },
  },
  'SoftmaxCrossEntropyLoss (none, no log_prob output)': {
    nodes: [node('SoftmaxCrossEntropyLoss', ['a', 'lab'], ['y'], undefined, { reduction: 'none' })],
    floats: { a: [4, 3] },
    intInputs: { lab: { dims: [4], values: [2, 0, 1, 2] } },
  },
  'SoftmaxCrossEntropyLoss (sum, [N, C, d] scores)': {
    nodes: [node('SoftmaxCrossEntropyLoss', ['a', 'lab'], ['y'], undefined, { reduction: 'sum' })],
    floats: { a: [2, 3, 4] },
    intInputs: { lab: { dims: [2, 4], values: [0, 1, 2, 2, 1, 1, 0, 2] } },
  },
  'SoftmaxCrossEntropyLoss (through both outputs)': {
    nodes: [
      node('SoftmaxCrossEntropyLoss', ['a', 'lab'], ['l', 'lp'], undefined, { reduction: 'mean' }),
      node('Mul', ['lp', 'l'], ['y']),
    ],
    floats: { a: [3, 4] },
    intInputs: { lab: { dims: [3], values: [1, 3, 0] } },
  },
  'Dropout (inference)': { nodes: n1('Dropout', ['a']), floats: { a: [3, 4] } },
  'shape arithmetic on the path is skipped (Shape, Gather, ConstantOfShape, Range, Equal, Cast, Constant)': {
    nodes: [
      node('Shape', ['a'], ['sh']),
      node('Gather', ['sh', 'one'], ['n'], undefined, { axis: 0 }),
      node('Constant', [], ['zero'], undefined, { value: int64Tensor('zero', [], [0]) }),
      node('Constant', [], ['step'], undefined, { value: int64Tensor('step', [], [1]) }),
      node('Range', ['zero', 'n', 'step'], ['rng']),
      node('Cast', ['rng'], ['rngf'], undefined, { to: DataType.FLOAT }),
      node('ConstantOfShape', ['sh'], ['twos'], undefined, { value: floatTensor('v', [1], new Float32Array([2])) }),
      node('Equal', ['rng', 'one'], ['eq']),
      node('Where', ['eq', 'a', 'twos'], ['w']),
      node('Mul', ['w', 'rngf'], ['m']),
      node('Add', ['m', 'a'], ['y']),
    ],
    floats: { a: [2, 3] },
    ints: { one: { dims: [], values: [1] } },
  },
};

for (const [name, c] of Object.entries(cases)) {
  test(`gradient of ${name} matches finite differences`, async () => {
    await checkCase(c, name);
  });
}

test('a wrong gradient is caught by the finite-difference check', async () => {
  // Sanity of the harness itself: compare the Sin gradient against the Cos function.
  const { fdMismatches: mm } = await import('../src/onnx/autodiff/fd-check.ts');
  const bad = mm([{ tensor: 'a', index: 0, analytic: 0.5, numeric: 0.6, scale: 1 }]);
  assert.equal(bad.length, 1);
});
