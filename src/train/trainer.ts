/**
 * The training loop of the bundled model: one gradient graph (loss + every weight's
 * gradient, weights fed as graph inputs) built once for [batchSize, seqlen], then per
 * step a seeded random batch of windows from the training tokens, global-norm clipping,
 * AdamW with decoupled weight decay (none on norm weights), warm-up + cosine rate,
 * periodic held-out perplexity, and checkpoints that resume the run exactly.
 */
import seedrandom from 'seedrandom';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { buildLlama } from '../onnx/llama-builder.ts';
import { initLlamaWeights, llamaWeightSpecs, type LlamaWeights, type WeightSpec } from '../onnx/llama-weights.ts';
import { appendLoss } from '../onnx/loss.ts';
import { buildGradientGraph, gradName } from '../onnx/autodiff/grad-graph.ts';
import { createSession, ort } from '../onnx/session.ts';
import { tensorToFloat32, transposeInto } from '../onnx/tensor.ts';
import type { ModelProto } from '../onnx/proto.ts';
import { PerplexityEvaluator } from '../eval/perplexity.ts';
import { adamwUpdate, globalNorm, type AdamWSlot } from './adamw.ts';
import { learningRate } from './schedule.ts';
import { configHash, type TrainConfig } from './config.ts';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.ts';

export interface TrainData {
  train: Int32Array;
  /** held-out tokens for periodic evaluation */
  eval: Int32Array;
}

export interface StepInfo {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensSeen: number;
  elapsedSeconds: number;
}

export interface EvalPoint {
  step: number;
  ppl: number;
  nll: number;
  tokens: number;
}

export interface TrainHistory {
  /** training loss of every step */
  loss: number[];
  gradNorm: number[];
  evals: EvalPoint[];
}

export interface TrainerOptions {
  /** Folder for checkpoints. */
  checkpointDir: string;
  /** Continue from the checkpoint in checkpointDir. */
  resume?: boolean;
  threads?: number;
  /** Stop (after saving a checkpoint) once this many steps are done; for interrupted runs. */
  stopAfter?: number;
  onStep?: (s: StepInfo) => void;
  onEval?: (e: EvalPoint) => void;
}

export interface TrainResult {
  /** trained weights in PyTorch layout, keyed by state_dict name */
  weights: LlamaWeights;
  stepsDone: number;
  finished: boolean;
  tokensSeen: number;
  elapsedSeconds: number;
  /** loop time of this session only (elapsedSeconds includes earlier sessions) */
  sessionSeconds: number;
  history: TrainHistory;
}

/** Weights in the graph's stored layout ([in, out] for linear layers) -> PyTorch layout. */
export function storedToPytorch(specs: WeightSpec[], stored: Map<string, Float32Array>): LlamaWeights {
  const w: LlamaWeights = new Map();
  for (const s of specs) {
    const d = stored.get(s.name)!;
    w.set(s.name, s.kind === 'linear' ? transposeInto(d, s.shape[1]!, s.shape[0]!) : Float32Array.from(d));
  }
  return w;
}

/** Token feeds for a batch: input_ids from `ids`, all-ones mask, positions 0..T-1. */
function batchFeeds(B: number, T: number): { ids: BigInt64Array; feeds: Record<string, ort.Tensor> } {
  const ids = new BigInt64Array(B * T);
  const mask = new BigInt64Array(B * T).fill(1n);
  const pos = new BigInt64Array(B * T);
  for (let i = 0; i < B * T; i++) pos[i] = BigInt(i % T);
  return {
    ids,
    feeds: {
      input_ids: new ort.Tensor('int64', ids, [B, T]),
      attention_mask: new ort.Tensor('int64', mask, [B, T]),
      position_ids: new ort.Tensor('int64', pos, [B, T]),
    },
  };
}

/** Train a LLaMA from the config on the given tokens. */
export async function trainLlama(cfg: TrainConfig, data: TrainData, opts: TrainerOptions): Promise<TrainResult> {
  const c = cfg.model;
  const B = cfg.batchSize;
  const T = cfg.seqlen;
  if (data.train.length < T + 1) throw new InputError(`training data has ${data.train.length} tokens, fewer than one window of ${T}`);
  for (const [what, toks] of [['training', data.train], ['evaluation', data.eval]] as const) {
    for (const t of toks) if (t < 0 || t >= c.vocabSize) throw new InputError(`${what} data holds token id ${t}, outside the model vocabulary of ${c.vocabSize}`);
  }
  const specs = llamaWeightSpecs(c);
  const names = specs.map((s) => s.name);
  const hash = configHash(cfg);

  // Initial weights (in the graph's stored layout) and the graphs.
  const model: ModelProto = buildLlama(c, initLlamaWeights(c, cfg.seed, cfg.initStd));
  const inits = new Map((model.graph!.initializer ?? []).map((t) => [t.name!, t]));
  let params: Map<string, Float32Array> = new Map(names.map((n) => [n, tensorToFloat32(inits.get(n)!)]));
  let m: Map<string, Float32Array> = new Map(names.map((n) => [n, new Float32Array(params.get(n)!.length)]));
  let v: Map<string, Float32Array> = new Map(names.map((n) => [n, new Float32Array(params.get(n)!.length)]));
  let step = 0;
  let tokensSeen = 0;
  let elapsedBefore = 0;
  let rng = seedrandom(`symprune-train:${cfg.seed}`, { state: true });
  let history: TrainHistory = { loss: [], gradNorm: [], evals: [] };
  if (opts.resume) {
    if (!hasCheckpoint(opts.checkpointDir)) throw new InputError(`--resume: no checkpoint in ${opts.checkpointDir}`);
    const ck = loadCheckpoint(opts.checkpointDir);
    if (ck.meta.configHash !== hash) throw new InputError(`--resume: the checkpoint in ${opts.checkpointDir} was made with a different config`);
    for (const n of names) {
      if (!ck.params.has(n) || ck.params.get(n)!.length !== params.get(n)!.length) throw new InputError(`--resume: checkpoint tensor ${n} is missing or has the wrong size`);
    }
    params = ck.params;
    m = ck.m;
    v = ck.v;
    step = ck.meta.step;
    tokensSeen = ck.meta.tokensSeen;
    elapsedBefore = ck.meta.elapsedSeconds;
    rng = seedrandom('', { state: ck.meta.rngState as seedrandom.State.Arc4 }) as typeof rng;
    history = ck.meta.history as TrainHistory;
  }

  const { ids, feeds } = batchFeeds(B, T);
  const gradModel = await buildGradientGraph(appendLoss(model), { loss: 'loss', wrt: names, feeds, weightsAsInputs: true });
  const session = await createSession(gradModel, { threads: opts.threads });
  const evaluator = await PerplexityEvaluator.create(model, { replaceable: names, threads: opts.threads });
  const weightFeeds: Record<string, ort.Tensor> = {};
  const slots: AdamWSlot[] = specs.map((s) => ({ param: params.get(s.name)!, m: m.get(s.name)!, v: v.get(s.name)!, decay: s.kind !== 'norm' }));
  specs.forEach((s, i) => {
    const dims = s.kind === 'linear' ? [s.shape[1]!, s.shape[0]] : [...s.shape];
    weightFeeds[s.name] = new ort.Tensor('float32', slots[i]!.param, dims);
  });
  const runFeeds = { ...feeds, ...weightFeeds };
  const inputs = Object.fromEntries(session.inputNames.map((n) => {
    if (!runFeeds[n]) throw new Error(`trainer: no feed for gradient graph input ${n}`);
    return [n, runFeeds[n]!];
  }));

  const t0 = performance.now();
  const elapsed = () => elapsedBefore + (performance.now() - t0) / 1000;
  const evaluate = async (): Promise<void> => {
    const r = await evaluator.evaluate(data.eval, { seqlen: T, maxTokens: cfg.evalTokens, weights: Object.fromEntries(params) });
    const e = { step, ppl: r.ppl, nll: r.nll, tokens: r.tokens };
    history.evals.push(e);
    opts.onEval?.(e);
  };
  const checkpoint = (): void => saveCheckpoint(opts.checkpointDir, { configHash: hash, step, tokensSeen, elapsedSeconds: elapsed(), rngState: rng.state(), history }, { params, m, v });

  const maxStart = data.train.length - T;
  const stopAt = Math.min(cfg.steps, opts.stopAfter ?? Infinity);
  try {
    while (step < stopAt) {
      for (let b = 0; b < B; b++) {
        const start = Math.floor(rng() * (maxStart + 1));
        for (let t = 0; t < T; t++) ids[b * T + t] = BigInt(data.train[start + t]!);
      }
      const res = await session.run(inputs);
      const loss = (res.loss!.data as Float32Array)[0]!;
      if (!Number.isFinite(loss)) throw new Error(`training diverged at step ${step + 1}: loss ${loss}`);
      const grads = names.map((n) => res[gradName(n)]!.data as Float32Array);
      const norm = globalNorm(grads);
      const scale = cfg.gradClip > 0 && norm > cfg.gradClip ? cfg.gradClip / norm : 1;
      const lr = learningRate(step, cfg);
      slots.forEach((slot, i) => adamwUpdate(slot, grads[i]!, step + 1, lr, { beta1: cfg.betas[0], beta2: cfg.betas[1], eps: cfg.eps, weightDecay: cfg.weightDecay }, scale));
      step++;
      tokensSeen += B * T;
      history.loss.push(loss);
      history.gradNorm.push(norm);
      opts.onStep?.({ step, steps: cfg.steps, loss, lr, gradNorm: norm, tokensSeen, elapsedSeconds: elapsed() });
      if (cfg.evalInterval > 0 && step % cfg.evalInterval === 0 && step < cfg.steps) await evaluate();
      if (cfg.checkpointInterval > 0 && step % cfg.checkpointInterval === 0 && step < stopAt) checkpoint();
    }
    const finished = step >= cfg.steps;
    if (finished && history.evals.at(-1)?.step !== step) await evaluate();
    checkpoint();
    return { weights: storedToPytorch(specs, params), stepsDone: step, finished, tokensSeen, elapsedSeconds: elapsed(), sessionSeconds: elapsed() - elapsedBefore, history };
  } finally {
    await session.release();
    await evaluator.release();
  }
}

/** Where a run keeps its checkpoints inside the output folder. */
export function checkpointDirOf(outDir: string): string {
  return join(outDir, 'checkpoint');
}
