/**
 * Pruning cost: time and peak memory to prune the bundled model with Wanda (128 x 128
 * calibration tokens of brown:calib, sequential, 50% unstructured), beside the time of
 * one dense perplexity evaluation on brown:test in the same run. When the bundled model
 * is absent, a model of its configuration (read from models/brown-llama.train.json,
 * else dim 256, 4 layers, vocab 4096) is built with seeded random weights and fed
 * seeded random tokens: the figures are about cost, not quality.
 */
import fs from 'node:fs';
import path from 'node:path';
import seedrandom from 'seedrandom';
import type { ModelProto } from '../src/onnx/proto.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { cloneModel, initializerStats } from '../src/onnx/graph-edit.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { validateLlamaConfig, type LlamaConfig } from '../src/onnx/llama-config.ts';
import { PerplexityEvaluator } from '../src/eval/perplexity.ts';
import { loadTokens } from '../src/data/dataset.ts';
import { BUNDLED_MODEL_DIR, REPO_ROOT } from '../src/model/load.ts';
import { baselineMethod } from '../src/prune/baselines.ts';
import { loadCalibrationWindows, modelVocabSize } from '../src/prune/calibration-windows.ts';
import { pruneModel } from '../src/prune/prune-model.ts';
import { parsePattern } from '../src/prune/score.ts';

const SEQLEN = 128;
const NSAMPLES = 128;

function fallbackConfig(): LlamaConfig {
  const file = path.join(REPO_ROOT, 'models', 'brown-llama.train.json');
  if (fs.existsSync(file)) {
    const c = JSON.parse(fs.readFileSync(file, 'utf8')) as { model?: unknown };
    if (c.model) return validateLlamaConfig(c.model, file);
  }
  return { vocabSize: 4096, dim: 256, layers: 4, heads: 4, kvHeads: 4, ffn: 688, maxPositions: 256, ropeTheta: 10000, normEps: 1e-5 };
}

function randomTokens(n: number, vocab: number, seed: string): Int32Array {
  const rng = seedrandom(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng() * vocab));
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;

export async function run(): Promise<void> {
  const modelFile = path.join(BUNDLED_MODEL_DIR, 'model.onnx');
  const tokenizerPath = path.join(BUNDLED_MODEL_DIR, 'tokenizer.json');
  let model: ModelProto;
  let calib: Int32Array[];
  let test: Int32Array;
  let source: string;
  if (fs.existsSync(modelFile)) {
    model = await loadModel(modelFile);
    const vocabSize = modelVocabSize(model);
    calib = await loadCalibrationWindows({ nsamples: NSAMPLES, seqlen: SEQLEN, tokenizerPath, vocabSize });
    test = await loadTokens('brown:test', { tokenizerPath, vocabSize });
    source = 'bundled model models/brown-llama, brown:calib / brown:test';
  } else {
    const cfg = fallbackConfig();
    model = buildLlama(cfg, initLlamaWeights(cfg, 0));
    const stream = randomTokens(NSAMPLES * SEQLEN, cfg.vocabSize, 'calib');
    calib = Array.from({ length: NSAMPLES }, (_, i) => stream.subarray(i * SEQLEN, (i + 1) * SEQLEN));
    test = randomTokens(200 * SEQLEN, cfg.vocabSize, 'test');
    source = `models/brown-llama absent: built model (dim ${cfg.dim}, ${cfg.layers} layers, vocab ${cfg.vocabSize}), random tokens`;
  }
  const weights = initializerStats(model);
  console.log(`${source}; weights ${mb(weights.bytes)} (${weights.params} parameters)`);

  // Prune first, on a clone (tensor bytes shared until a layer is rewritten), so the
  // process high-water mark (maxRSS) read right after covers loading + pruning only.
  // RSS is also sampled every 5 ms (ORT runs are async, so the timer fires during
  // calibration) and at every progress step.
  const pruned = cloneModel(model);
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  const timer = setInterval(sample, 5);
  const t0 = performance.now();
  const r = await pruneModel(pruned, {
    method: baselineMethod('wanda'),
    sparsity: 0.5,
    pattern: parsePattern('unstructured', 0.5),
    calibration: 'sequential',
    windows: calib,
    onProgress: sample,
  });
  const pruneSeconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  sample();
  peak = Math.max(peak, process.resourceUsage().maxRSS * 1024);

  // One dense perplexity evaluation: the yardstick.
  const ev = await PerplexityEvaluator.create(model);
  const dense = await ev.evaluate(test, { seqlen: SEQLEN });
  await ev.release();

  console.log(`dense perplexity evaluation (brown:test, ${dense.windows} x ${SEQLEN} tokens): ${dense.seconds.toFixed(2)} s, ppl ${dense.ppl.toFixed(2)}`);
  console.log(`wanda prune (sequential, ${calib.length} x ${SEQLEN} calibration tokens, ${r.layers.length} layers, ${(100 * r.overall.sparsity).toFixed(1)}%): ${pruneSeconds.toFixed(2)} s ` +
    `(calibration ${r.seconds.calibration.toFixed(2)} s, scores+masks ${r.seconds.prune.toFixed(2)} s)`);
  console.log(`memory: RSS ${mb(rssBefore)} with the model loaded, peak ${mb(peak)} while pruning (+${mb(peak - rssBefore)})`);
  console.log(`ratio: pruning with Wanda = ${(pruneSeconds / dense.seconds).toFixed(2)}x one dense perplexity evaluation; ` +
    `extra peak memory = ${((peak - rssBefore) / weights.bytes).toFixed(2)}x the model's weights`);
}
