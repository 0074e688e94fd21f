/**
 * Gradient rule for SoftmaxCrossEntropyLoss, the op the appended LM loss uses: its
 * backward is (softmax - onehot(label)) * weight per position, a handful of passes over
 * the logits instead of the scatter a LogSoftmax + GatherElements graph would need.
 */
import { DataType, type NodeProto } from '../proto.ts';
import { getAttr } from '../graph-build.ts';
import { numel } from '../tensor.ts';
import { InputError } from '../../errors.ts';
import type { GradRule } from './context.ts';

const ins = (n: NodeProto): string[] => n.input ?? [];

const softmaxCrossEntropy: GradRule = (ctx, n, gy, need) => {
  if (!need[0]) return ins(n).map(() => null);
  const [scores, labels, weights] = ins(n) as [string, string, string?];
  if (weights) throw new InputError(`gradient: SoftmaxCrossEntropyLoss node '${n.name}': class weights have no gradient rule`);
  const sd = ctx.dims(scores);
  const dt = ctx.dtype(scores);
  const C = sd[1]!;
  const ld = ctx.dims(labels); // [N, d1...]
  const reduction = (getAttr(n, 'reduction') as string | undefined) ?? 'mean';
  const ignore = getAttr(n, 'ignore_index') as number | undefined;
  const lu = [ld[0]!, 1, ...ld.slice(1)];
  let lab = labels;
  if (ctx.dtype(labels) !== DataType.INT64) lab = ctx.emit('Cast', [labels], { to: DataType.INT64 });
  const labU = ctx.reshape(lab, ld, lu);
  const lp = (n.output ?? [])[1];
  const probs = lp ? ctx.emit('Exp', [lp]) : ctx.emit('Softmax', [scores], { axis: 1 });
  const classes = ctx.reshape(ctx.ints(Array.from({ length: C }, (_, i) => i)), [C], [1, C, ...ld.slice(1).map(() => 1)]);
  const onehot = () => ctx.emit('Cast', [ctx.emit('Equal', [classes, labU])], { to: dt });

  let res: string | null = null;
  const gl = gy[0];
  if (gl) {
    const diff = ctx.emit('Sub', [probs, onehot()]);
    // Per-position weight [N, 1, d...] of the loss gradient.
    let w: string;
    const keep = ignore !== undefined ? ctx.emit('Cast', [ctx.emit('Not', [ctx.emit('Equal', [labU, ctx.ints([ignore], true)])])], { to: dt }) : null;
    if (reduction === 'none') w = ctx.reshape(gl, ld, lu);
    else if (reduction === 'sum') w = gl;
    else if (reduction === 'mean') {
      const count = keep ? ctx.emit('ReduceSum', [keep], { keepdims: 0 }) : ctx.scalar(numel(ld), dt);
      w = ctx.emit('Div', [gl, count]);
    } else throw new InputError(`gradient: SoftmaxCrossEntropyLoss node '${n.name}': unknown reduction '${reduction}'`);
    if (keep) w = ctx.emit('Mul', [w, keep]);
    res = ctx.emit('Mul', [diff, w]);
  }
  const glp = gy[1];
  if (glp) {
    // Through the log_prob output: the LogSoftmax rule along the class axis.
    const s = ctx.emit('ReduceSum', [glp, ctx.ints([1])], { keepdims: 1 });
    const part = ctx.emit('Sub', [glp, ctx.emit('Mul', [probs, s])]);
    res = res ? ctx.emit('Add', [res, part]) : part;
  }
  return [res, null, null].slice(0, ins(n).length);
};

export const lossRules: Record<string, GradRule> = { SoftmaxCrossEntropyLoss: softmaxCrossEntropy };
