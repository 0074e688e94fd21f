/**
 * The training config file (`symprune train --config FILE.json`): model shape, tokenizer,
 * data splits and optimiser settings, validated field by field so a bad file fails with
 * one line naming the field.
 */
import { readFileSync, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { InputError } from '../errors.ts';
import { validateLlamaConfig, type LlamaConfig } from '../onnx/llama-config.ts';

export interface TrainConfig {
  model: LlamaConfig;
  tokenizer: {
    /** Vocabulary of the byte-level BPE trained on data.train (must equal model.vocabSize). */
    vocabSize: number;
    /** An existing tokenizer.json to use instead of training one (relative to the config file). */
    path?: string;
  };
  data: {
    /** Token source for training batches (default brown:train). */
    train: string;
    /** Held-out source for periodic evaluation (default brown:search). */
    eval: string;
    /** Source of the final perplexity in card.json (default brown:test). */
    test: string;
  };
  seqlen: number;
  batchSize: number;
  /** Optimiser steps; or give `tokens` and steps = ceil(tokens / (batchSize * seqlen)). */
  steps: number;
  lr: number;
  minLr: number;
  warmup: number;
  weightDecay: number;
  betas: [number, number];
  eps: number;
  /** Global gradient-norm clip (0 = off). */
  gradClip: number;
  /** Evaluate every this many steps (0 = only at the end). */
  evalInterval: number;
  /** Tokens of data.eval used by each periodic evaluation. */
  evalTokens: number;
  /** Save a checkpoint every this many steps (0 = only at the end). */
  checkpointInterval: number;
  seed: number;
  /** Std of the normal initialisation of embeddings and linear layers. */
  initStd: number;
}

const DEFAULTS = {
  data: { train: 'brown:train', eval: 'brown:search', test: 'brown:test' },
  seqlen: 128,
  batchSize: 16,
  lr: 3e-3,
  minLr: 3e-4,
  warmup: 100,
  weightDecay: 0.1,
  betas: [0.9, 0.95] as [number, number],
  eps: 1e-8,
  gradClip: 1,
  evalInterval: 250,
  evalTokens: 32768,
  checkpointInterval: 250,
  seed: 1,
  initStd: 0.02,
};

function num(o: Record<string, unknown>, key: string, src: string, opts: { int?: boolean; min?: number; max?: number; def?: number } = {}): number {
  const v = o[key] ?? opts.def;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(`${src}: ${key} must be a number (got ${JSON.stringify(v)})`);
  if (opts.int && !Number.isInteger(v)) throw new InputError(`${src}: ${key} must be an integer (got ${v})`);
  if (opts.min !== undefined && v < opts.min) throw new InputError(`${src}: ${key} must be >= ${opts.min} (got ${v})`);
  if (opts.max !== undefined && v > opts.max) throw new InputError(`${src}: ${key} must be <= ${opts.max} (got ${v})`);
  return v;
}

/** Validate a parsed config object; relative tokenizer paths resolve against `baseDir`. */
export function parseTrainConfig(raw: unknown, src = 'train config', baseDir = '.'): TrainConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InputError(`${src}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  const known = new Set(['model', 'tokenizer', 'data', 'seqlen', 'batchSize', 'steps', 'tokens', 'lr', 'minLr', 'warmup', 'weightDecay', 'betas', 'eps', 'gradClip', 'evalInterval', 'evalTokens', 'checkpointInterval', 'seed', 'initStd', 'comment']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new InputError(`${src}: unknown field '${k}'`);
  const model = validateLlamaConfig(o.model, `${src}: model`);
  const tk = (o.tokenizer ?? {}) as Record<string, unknown>;
  if (typeof tk !== 'object') throw new InputError(`${src}: tokenizer must be an object`);
  const vocabSize = num(tk, 'vocabSize', `${src}: tokenizer`, { int: true, min: 257, def: model.vocabSize });
  if (vocabSize !== model.vocabSize) throw new InputError(`${src}: tokenizer.vocabSize ${vocabSize} differs from model.vocabSize ${model.vocabSize}`);
  let path: string | undefined;
  if (tk.path !== undefined) {
    if (typeof tk.path !== 'string') throw new InputError(`${src}: tokenizer.path must be a string`);
    path = resolve(baseDir, tk.path);
    if (!existsSync(path)) throw new InputError(`${src}: tokenizer.path ${path} does not exist`);
  }
  const d = (o.data ?? {}) as Record<string, unknown>;
  const data = { ...DEFAULTS.data };
  for (const k of ['train', 'eval', 'test'] as const) {
    if (d[k] === undefined) continue;
    if (typeof d[k] !== 'string' || !d[k]) throw new InputError(`${src}: data.${k} must be a token source such as brown:train`);
    data[k] = d[k] as string;
  }
  const seqlen = num(o, 'seqlen', src, { int: true, min: 2, def: DEFAULTS.seqlen });
  if (seqlen > model.maxPositions) throw new InputError(`${src}: seqlen ${seqlen} exceeds model.maxPositions ${model.maxPositions}`);
  const batchSize = num(o, 'batchSize', src, { int: true, min: 1, def: DEFAULTS.batchSize });
  let steps: number;
  if (o.steps !== undefined && o.tokens !== undefined) throw new InputError(`${src}: give steps or tokens, not both`);
  if (o.tokens !== undefined) steps = Math.ceil(num(o, 'tokens', src, { int: true, min: 1 }) / (batchSize * seqlen));
  else steps = num(o, 'steps', src, { int: true, min: 1 });
  const betasRaw = o.betas ?? DEFAULTS.betas;
  if (!Array.isArray(betasRaw) || betasRaw.length !== 2 || betasRaw.some((b) => typeof b !== 'number' || !(b >= 0 && b < 1))) {
    throw new InputError(`${src}: betas must be two numbers in [0, 1) (got ${JSON.stringify(betasRaw)})`);
  }
  const lr = num(o, 'lr', src, { min: 0, def: DEFAULTS.lr });
  return {
    model,
    tokenizer: path ? { vocabSize, path } : { vocabSize },
    data,
    seqlen,
    batchSize,
    steps,
    lr,
    minLr: num(o, 'minLr', src, { min: 0, max: lr, def: Math.min(DEFAULTS.minLr, lr) }),
    warmup: num(o, 'warmup', src, { int: true, min: 0, def: Math.min(DEFAULTS.warmup, steps) }),
    weightDecay: num(o, 'weightDecay', src, { min: 0, def: DEFAULTS.weightDecay }),
    betas: betasRaw as [number, number],
    eps: num(o, 'eps', src, { min: 0, def: DEFAULTS.eps }),
    gradClip: num(o, 'gradClip', src, { min: 0, def: DEFAULTS.gradClip }),
    evalInterval: num(o, 'evalInterval', src, { int: true, min: 0, def: DEFAULTS.evalInterval }),
    evalTokens: num(o, 'evalTokens', src, { int: true, min: seqlen, def: DEFAULTS.evalTokens }),
    checkpointInterval: num(o, 'checkpointInterval', src, { int: true, min: 0, def: DEFAULTS.checkpointInterval }),
    seed: num(o, 'seed', src, { int: true, def: DEFAULTS.seed }),
    initStd: num(o, 'initStd', src, { min: 0, def: DEFAULTS.initStd }),
  };
}

export function loadTrainConfig(file: string): TrainConfig {
  if (!existsSync(file)) throw new InputError(`train config not found: ${file}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InputError(`${file} is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  return parseTrainConfig(raw, file, dirname(resolve(file)));
}

/** Fingerprint of everything that shapes a run, so a checkpoint is only resumed by the same config. */
export function configHash(c: TrainConfig): string {
  return createHash('sha256').update(JSON.stringify(c)).digest('hex').slice(0, 16);
}
