/**
 * `symprune train` end to end: tokenizer (trained on the training text unless given),
 * token streams, the training loop, then model.onnx, tokenizer.json and card.json in
 * the output folder. The card carries the final test perplexity and, as the yardstick,
 * the perplexity of an add-one-smoothed unigram model of the same tokenizer.
 */
import { copyFileSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { makeDirs } from '../files.ts';
import { join, resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { trainBpe, saveTokenizerJson } from '../data/bpe-train.ts';
import { loadText, loadTokens } from '../data/dataset.ts';
import { buildLlama } from '../onnx/llama-builder.ts';
import { llamaParamCount } from '../onnx/llama-config.ts';
import { saveModel } from '../onnx/model-io.ts';
import { PerplexityEvaluator } from '../eval/perplexity.ts';
import { configHash, type TrainConfig } from './config.ts';
import { hasCheckpoint } from './checkpoint.ts';
import { checkpointDirOf, trainLlama, type EvalPoint, type StepInfo } from './trainer.ts';
import { fitUnigram, unigramPerplexity } from './unigram.ts';

export interface RunOptions {
  resume?: boolean;
  threads?: number;
  /** Stop early after this many steps (checkpoint kept; resume later). */
  stopAfter?: number;
  /** Keep OUT/checkpoint after a finished run (default: removed, it is 3x the weights). */
  keepCheckpoint?: boolean;
  onStep?: (s: StepInfo) => void;
  onEval?: (e: EvalPoint) => void;
  log?: (line: string) => void;
}

export interface TrainCard {
  format: 'symprune-train-card/1';
  config: TrainConfig;
  configHash: string;
  params: number;
  seed: number;
  steps: number;
  tokensSeen: number;
  /** training loop time (periodic evaluations included), summed over resumed sessions */
  trainSeconds: number;
  /** trainSeconds plus this invocation's tokenizer, tokenization and final evaluation */
  wallSeconds: number;
  /** training tokens per second of the loop */
  tokensPerSecond: number;
  finalTrainLoss: number;
  evals: EvalPoint[];
  test: { data: string; seqlen: number; ppl: number; nll: number; tokens: number };
  unigram: { fitOn: string; smoothing: string; ppl: number; nll: number; tokens: number };
  /** test ppl / unigram ppl */
  pplRatio: number;
}

/** Train (or resume) per the config; writes model.onnx, tokenizer.json, card.json into outDir when done. */
export async function runTraining(cfg: TrainConfig, outDir: string, opts: RunOptions = {}): Promise<TrainCard | null> {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  if (opts.resume && !hasCheckpoint(checkpointDirOf(outDir))) throw new InputError(`--resume: no checkpoint in ${checkpointDirOf(outDir)}`);
  makeDirs(outDir);
  const tokPath = join(outDir, 'tokenizer.json');
  if (cfg.tokenizer.path) {
    if (resolve(cfg.tokenizer.path) !== resolve(tokPath)) copyFileSync(cfg.tokenizer.path, tokPath);
  } else if (!(opts.resume && existsSync(tokPath))) {
    log(`training a byte-level BPE tokenizer (${cfg.tokenizer.vocabSize} tokens) on ${cfg.data.train}`);
    const bpe = trainBpe(loadText(cfg.data.train, 'data.train'), { vocabSize: cfg.tokenizer.vocabSize });
    saveTokenizerJson(bpe, tokPath);
  }
  const load = (spec: string) => loadTokens(spec, { tokenizerPath: tokPath, vocabSize: cfg.model.vocabSize });
  const train = await load(cfg.data.train);
  const evalTokens = await load(cfg.data.eval);
  log(`${train.length} training tokens (${cfg.data.train}), ${evalTokens.length} evaluation tokens (${cfg.data.eval}); ${cfg.steps} steps of ${cfg.batchSize}x${cfg.seqlen}`);

  const result = await trainLlama(cfg, { train, eval: evalTokens }, {
    checkpointDir: checkpointDirOf(outDir),
    resume: opts.resume,
    threads: opts.threads,
    stopAfter: opts.stopAfter,
    onStep: opts.onStep,
    onEval: opts.onEval,
  });
  if (!result.finished) return null;

  const model = buildLlama(cfg.model, result.weights);
  await saveModel(model, join(outDir, 'model.onnx'));
  const testTokens = await load(cfg.data.test);
  const evaluator = await PerplexityEvaluator.create(model, { threads: opts.threads });
  const test = await evaluator.evaluate(testTokens, { seqlen: cfg.seqlen });
  await evaluator.release();
  const uni = unigramPerplexity(fitUnigram(train, cfg.model.vocabSize), testTokens, cfg.seqlen);
  const card: TrainCard = {
    format: 'symprune-train-card/1',
    config: cfg,
    configHash: configHash(cfg),
    params: llamaParamCount(cfg.model),
    seed: cfg.seed,
    steps: result.stepsDone,
    tokensSeen: result.tokensSeen,
    trainSeconds: Math.round(result.elapsedSeconds * 10) / 10,
    wallSeconds: 0,
    tokensPerSecond: Math.round(result.tokensSeen / result.elapsedSeconds),
    finalTrainLoss: result.history.loss.slice(-20).reduce((a, b) => a + b, 0) / Math.min(20, result.history.loss.length),
    evals: result.history.evals,
    test: { data: cfg.data.test, seqlen: cfg.seqlen, ppl: test.ppl, nll: test.nll, tokens: test.tokens },
    unigram: { fitOn: cfg.data.train, smoothing: 'add-one (Laplace): p(v) = (count(v) + 1) / (N + V)', ppl: uni.ppl, nll: uni.nll, tokens: uni.tokens },
    pplRatio: test.ppl / uni.ppl,
  };
  card.wallSeconds = Math.round((result.elapsedSeconds + (performance.now() - started) / 1000 - result.sessionSeconds) * 10) / 10;
  writeFileSync(join(outDir, 'card.json'), JSON.stringify(card, null, 2) + '\n');
  if (!opts.keepCheckpoint) rmSync(checkpointDirOf(outDir), { recursive: true, force: true });
  return card;
}
