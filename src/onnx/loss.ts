/**
 * Mean next-token cross-entropy appended to a causal LM graph, so a gradient graph can
 * differentiate it. Every position of every window counts (calibration and training
 * use full windows; attention_mask is not consulted): the loss is the mean over all
 * B*(T-1) predicted tokens of -log softmax(logits[:, t])[input_ids[:, t+1]]. It is one
 * SoftmaxCrossEntropyLoss node over the flattened logits, the last position of each
 * window carrying the ignored label -100.
 */
import { DataType, onnx, type ModelProto } from './proto.ts';
import { node, valueInfo } from './graph-build.ts';
import { int64Tensor } from './tensor.ts';
import { check } from '../errors.ts';

export interface LossOptions {
  /** Name of the logits output (default 'logits'), [batch, seq, vocab]. */
  logits?: string;
  /** Name of the token-id input (default 'input_ids'), [batch, seq]. */
  inputIds?: string;
  /** Also output `loss_per_sequence` [batch]: each window's mean next-token CE. */
  perSequence?: boolean;
  /**
   * 'mean' (default): `loss` is the mean over all predicted tokens. 'sum-of-sequence-means':
   * `loss` is the sum over windows of each window's mean, so a batched gradient is the
   * sum of the per-window gradients (what per-sequence statistics need).
   */
  reduction?: 'mean' | 'sum-of-sequence-means';
}

/** Label of the positions without a next token. */
export const IGNORE_LABEL = -100;

/** The model with a scalar `loss` output (and `loss_per_sequence` if asked); logits kept. */
export function appendLoss(model: ModelProto, opts: LossOptions = {}): ModelProto {
  const logits = opts.logits ?? 'logits';
  const ids = opts.inputIds ?? 'input_ids';
  const graph = model.graph;
  check(graph, 'model: no graph');
  const logitsOut = (graph.output ?? []).find((o) => o.name === logits);
  check(logitsOut, `model: no '${logits}' output to put a loss on (outputs: ${(graph.output ?? []).map((o) => o.name).join(', ') || 'none'})`);
  const lossType = logitsOut.type?.tensorType?.elemType || DataType.FLOAT;
  const idsInput = (graph.input ?? []).find((i) => i.name === ids);
  check(idsInput, `model: no '${ids}' input to take next-token targets from`);
  check(idsInput.type?.tensorType?.elemType === DataType.INT64, `model: input '${ids}' must be int64`);
  const taken = new Set<string>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) taken.add(o);
  for (const t of graph.initializer ?? []) taken.add(t.name!);
  for (const i of graph.input ?? []) taken.add(i.name!);
  check(!taken.has('loss'), `model: already has a tensor named 'loss'`);
  const p = (s: string) => `/loss/${s}`;
  const c = (name: string, values: number[], scalar = false) => int64Tensor(p(name), scalar ? [] : [values.length], values);
  const perToken = opts.perSequence || opts.reduction === 'sum-of-sequence-means';
  const nodes = [
    // Targets: ids shifted left by one, the last column ignored.
    node('Slice', [ids, p('one'), p('big'), p('one')], [p('ids_tail')]),
    node('Slice', [ids, p('zero'), p('one'), p('one')], [p('ids_head')]),
    node('Mul', [p('ids_head'), p('zero_s')], [p('zeros_col')]),
    node('Add', [p('zeros_col'), p('ignore_s')], [p('ignore_col')]),
    node('Concat', [p('ids_tail'), p('ignore_col')], [p('targets')], undefined, { axis: 1 }),
    node('Reshape', [p('targets'), p('minus_one')], [p('labels')]),
    node('Flatten', [logits], [p('scores')], undefined, { axis: 2 }),
    node('SoftmaxCrossEntropyLoss', [p('scores'), p('labels')], [perToken ? p('token_nll') : 'loss', p('log_prob')], undefined,
      { reduction: perToken ? 'none' : 'mean', ignore_index: IGNORE_LABEL }),
  ];
  const outputs = [valueInfo('loss', lossType, [])];
  if (perToken) {
    nodes.push(
      node('Shape', [ids], [p('ids_shape')]),
      node('Reshape', [p('token_nll'), p('ids_shape')], [p('token_nll_bt')]),
      node('Slice', [p('token_nll_bt'), p('zero'), p('minus_one'), p('one')], [p('predicted_nll')]),
      node('ReduceMean', [p('predicted_nll')], ['loss_per_sequence'], undefined, { axes: [1], keepdims: 0 }),
    );
    if (opts.perSequence) outputs.push(valueInfo('loss_per_sequence', lossType, ['batch']));
    if (opts.reduction === 'sum-of-sequence-means') nodes.push(node('ReduceSum', ['loss_per_sequence'], ['loss'], undefined, { keepdims: 0 }));
    else nodes.push(node('ReduceMean', [p('predicted_nll')], ['loss'], undefined, { keepdims: 0 }));
  }
  return onnx.ModelProto.create({
    ...model,
    graph: {
      ...graph,
      node: [...(graph.node ?? []), ...nodes],
      initializer: [...(graph.initializer ?? []), c('zero', [0]), c('one', [1]), c('minus_one', [-1]), c('big', [2 ** 53]),
        c('zero_s', [0], true), c('ignore_s', [IGNORE_LABEL], true)],
      output: [...(graph.output ?? []), ...outputs],
    },
  });
}
