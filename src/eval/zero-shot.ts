/**
 * Zero-shot multiple-choice tasks scored as lm-eval-harness scores them (its
 * `multiple_choice` output type, and `loglikelihood` with greedy-exact accuracy for
 * LAMBADA-style single-choice items).
 *
 * An item is `{"context": "...", "choices": ["...", ...], "gold": i}`, one a line of a
 * JSONL file. For each choice:
 *  - trailing whitespace of the context moves to the front of the choice;
 *  - context tokens = tok(context); choice tokens = tok(context + choice) after the
 *    first len(tok(context)) tokens (so a merge across the boundary counts to the choice);
 *  - the input is (context + choice tokens) cut from the left to maxLength + 1 tokens,
 *    minus the last; the choice's log-likelihood is the sum of log-softmax(logits) at the
 *    positions predicting its tokens, and it is greedy when each of those tokens is the
 *    argmax.
 * acc: the choice of highest log-likelihood is the gold one (first on ties, as np.argmax);
 * acc_norm: the same with each log-likelihood divided by the choice's length in UTF-8
 * bytes (the choice as written in the file). An item with one choice scores acc =
 * acc_norm = 1 when that choice is greedy (LAMBADA's accuracy), and the task also reports
 * lm-eval's perplexity exp(−mean log-likelihood). Standard errors as lm-eval's
 * mean_stderr: sample standard deviation (n − 1) / sqrt(n).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { InputError } from '../errors.ts';
import { DataType, type ModelProto } from '../onnx/proto.ts';
import { createSession, ort } from '../onnx/session.ts';
import { graphMaxPositions } from '../onnx/max-positions.ts';
import type { Tokenizer } from '../data/tokenizer.ts';

export interface TaskItem {
  context: string;
  choices: string[];
  gold: number;
}

export interface Task {
  name: string;
  items: TaskItem[];
}

export interface TaskResult {
  acc: number;
  acc_stderr: number;
  acc_norm: number;
  acc_norm_stderr: number;
  n: number;
  /** exp(−mean log-likelihood of the gold choice), for single-choice (LAMBADA-style) tasks. */
  ppl?: number;
}

/** lm-eval's default context length cap when the model declares none. */
export const DEFAULT_MAX_LENGTH = 256;

/** Parse and check one task file; its name is the file name without `.jsonl`. */
export function loadTask(file: string): Task {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new InputError(`--task ${file}: cannot read the file`);
  }
  const items: TaskItem[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch {
      throw new InputError(`--task ${file}: line ${i + 1} is not JSON`);
    }
    items.push(checkItem(o, `--task ${file}: line ${i + 1}`));
  });
  if (items.length === 0) throw new InputError(`--task ${file}: no items`);
  return { name: basename(file).replace(/\.jsonl$/i, ''), items };
}

function checkItem(o: unknown, where: string): TaskItem {
  const r = o as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new InputError(`${where}: expected an object {"context", "choices", "gold"}`);
  if (typeof r.context !== 'string' || r.context.trim() === '') throw new InputError(`${where}: "context" must be a non-empty string`);
  if (!Array.isArray(r.choices) || r.choices.length === 0 || r.choices.some((c) => typeof c !== 'string' || c === '')) throw new InputError(`${where}: "choices" must be a non-empty list of non-empty strings`);
  if (!Number.isInteger(r.gold) || (r.gold as number) < 0 || (r.gold as number) >= r.choices.length) throw new InputError(`${where}: "gold" must be an index into "choices"`);
  return { context: r.context, choices: r.choices as string[], gold: r.gold as number };
}

/** Context and choice token ids, lm-eval's way (see the file comment). */
export function encodePair(tok: Tokenizer, context: string, choice: string): { context: number[]; choice: number[] } {
  const spaces = context.length - context.trimEnd().length;
  if (spaces > 0) {
    choice = context.slice(context.length - spaces) + choice;
    context = context.slice(0, context.length - spaces);
  }
  const whole = tok.encode(context + choice);
  const ctx = tok.encode(context);
  return { context: ctx, choice: whole.slice(ctx.length) };
}

/** Log-likelihood of a choice and whether greedy decoding reproduces it. */
export interface Loglik {
  ll: number;
  greedy: boolean;
}

/**
 * One onnxruntime session over a causal LM's logits; scores a batch of (context,
 * choice) token pairs in one run (right-padded: causal attention keeps padding out of
 * every scored position).
 */
export class LoglikScorer {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly inputs: Map<string, 'int64' | 'int32'>,
    readonly maxLength: number,
  ) {}

  static async create(model: ModelProto, opts: { threads?: number; maxLength?: number } = {}): Promise<LoglikScorer> {
    const g = model.graph;
    if (!g?.output?.some((o) => o.name === 'logits')) throw new InputError(`model has no 'logits' output`);
    const inits = new Set((g.initializer ?? []).map((t) => t.name));
    const inputs = new Map<string, 'int64' | 'int32'>();
    for (const v of g.input ?? []) {
      const name = v.name ?? '';
      if (inits.has(name)) continue;
      if (!['input_ids', 'attention_mask', 'position_ids'].includes(name)) throw new InputError(`model input '${name}' is not one of input_ids, attention_mask, position_ids`);
      inputs.set(name, v.type?.tensorType?.elemType === DataType.INT32 ? 'int32' : 'int64');
    }
    if (!inputs.has('input_ids')) throw new InputError(`model has no 'input_ids' input`);
    const m = { ...model, graph: { ...g, output: g.output.filter((o) => o.name === 'logits') } };
    const session = await createSession(m as ModelProto, { threads: opts.threads });
    // lm-eval truncates each item on the left to the model's length; a longer window would fail inside the position table's Gather.
    const maxLength = Math.min(opts.maxLength ?? DEFAULT_MAX_LENGTH, graphMaxPositions(model) ?? Infinity);
    return new LoglikScorer(session, inputs, maxLength);
  }

  /** Scores of several (context, choice) pairs, run as one batch. */
  async score(pairs: Array<{ context: number[]; choice: number[] }>): Promise<Loglik[]> {
    const seqs = pairs.map((p) => {
      if (p.choice.length === 0) throw new InputError('a choice has no tokens of its own');
      const all = [...p.context, ...p.choice].slice(-(this.maxLength + 1));
      return { input: all.slice(0, -1), n: p.choice.length, targets: p.choice };
    });
    const b = seqs.length;
    const T = Math.max(...seqs.map((s) => s.input.length));
    const ids = new Array<number>(b * T).fill(0);
    seqs.forEach((s, i) => s.input.forEach((t, j) => (ids[i * T + j] = t)));
    const feed = (name: string, vals: number[]): ort.Tensor =>
      this.inputs.get(name) === 'int32' ? new ort.Tensor('int32', Int32Array.from(vals), [b, T]) : new ort.Tensor('int64', BigInt64Array.from(vals, (v) => BigInt(v)), [b, T]);
    const feeds: Record<string, ort.Tensor> = { input_ids: feed('input_ids', ids) };
    if (this.inputs.has('attention_mask')) feeds.attention_mask = feed('attention_mask', new Array(b * T).fill(1));
    if (this.inputs.has('position_ids')) feeds.position_ids = feed('position_ids', Array.from({ length: b * T }, (_, k) => k % T));
    const out = await this.session.run(feeds);
    const logits = out.logits!;
    const V = logits.dims[2]!;
    const data = logits.data as Float32Array;
    return seqs.map((s, i) => {
      let ll = 0;
      let greedy = true;
      const first = s.input.length - s.n; // position predicting the first choice token
      for (let k = 0; k < s.n; k++) {
        const off = (i * T + first + k) * V;
        let mx = -Infinity;
        let arg = 0;
        for (let v = 0; v < V; v++) if (data[off + v]! > mx) ((mx = data[off + v]!), (arg = v));
        let z = 0;
        for (let v = 0; v < V; v++) z += Math.exp(data[off + v]! - mx);
        ll += data[off + s.targets[k]!]! - mx - Math.log(z);
        if (arg !== s.targets[k]) greedy = false;
      }
      return { ll, greedy };
    });
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Index of the largest value, the first on ties (np.argmax). */
function argmax(v: number[]): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** lm-eval's mean_stderr: sample standard deviation over sqrt(n). */
export function meanStderr(xs: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const v = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return Math.sqrt(v / n);
}

const utf8Length = (s: string) => Buffer.byteLength(s, 'utf8');

/** Score one task: per item, every choice's log-likelihood; then the accuracies. */
export async function scoreTask(scorer: LoglikScorer, tok: Tokenizer, task: Task, onItem?: (done: number, total: number) => void): Promise<TaskResult> {
  const acc: number[] = [];
  const accNorm: number[] = [];
  const goldLl: number[] = [];
  const single = task.items.every((it) => it.choices.length === 1);
  for (const [i, it] of task.items.entries()) {
    const res = await scorer.score(it.choices.map((c) => encodePair(tok, it.context, c)));
    if (it.choices.length === 1) {
      acc.push(res[0]!.greedy ? 1 : 0);
      accNorm.push(res[0]!.greedy ? 1 : 0);
    } else {
      const lls = res.map((r) => r.ll);
      acc.push(argmax(lls) === it.gold ? 1 : 0);
      accNorm.push(argmax(lls.map((ll, k) => ll / utf8Length(it.choices[k]!))) === it.gold ? 1 : 0);
    }
    goldLl.push(res[it.gold]!.ll);
    onItem?.(i + 1, task.items.length);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const r: TaskResult = { acc: mean(acc), acc_stderr: meanStderr(acc), acc_norm: mean(accNorm), acc_norm_stderr: meanStderr(accNorm), n: task.items.length };
  if (single) r.ppl = Math.exp(-mean(goldLl));
  return r;
}

/** Every task on one model: {name: result}. */
export async function scoreTasks(
  model: ModelProto,
  tok: Tokenizer,
  tasks: Task[],
  opts: { threads?: number; maxLength?: number; onItem?: (task: string, done: number, total: number) => void } = {},
): Promise<Record<string, TaskResult>> {
  const out: Record<string, TaskResult> = {};
  if (tasks.length === 0) return out;
  const scorer = await LoglikScorer.create(model, opts);
  try {
    for (const t of tasks) out[t.name] = await scoreTask(scorer, tok, t, (d, n) => opts.onItem?.(t.name, d, n));
  } finally {
    await scorer.release();
  }
  return out;
}
