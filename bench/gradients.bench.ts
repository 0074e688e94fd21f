/**
 * One loss+gradient run beside one forward run of the same batch, on the bundled model
 * (or, before it exists, a freshly built model of the bundled config): the training shape
 * (all weights, [batchSize, seqlen]) and the G-statistics shape (prunable layers, [1, seqlen]);
 * then G of every layer over 16 windows by the whole model's gradient graph beside G block
 * by block (stream-gradients.ts, hidden states and G in a scratch file).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../src/onnx/model-io.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights, llamaWeightSpecs } from '../src/onnx/llama-weights.ts';
import { parseTrainConfig } from '../src/train/config.ts';
import { appendLoss } from '../src/onnx/loss.ts';
import { buildGradientGraph } from '../src/onnx/autodiff/grad-graph.ts';
import { createSession, ort } from '../src/onnx/session.ts';
import type { ModelProto } from '../src/onnx/proto.ts';
import { tokenFeeds } from '../src/prune/calibration.ts';
import { REPO_ROOT, BUNDLED_MODEL_DIR } from '../src/model/load.ts';
import { discoverLayers } from '../src/prune/discover.ts';
import { computeGradientNorms } from '../src/prune/gradients.ts';
import { streamedGradientNormsToScratch } from '../src/prune/stream-gradients.ts';
import { ScratchFloats } from '../src/prune/scratch-floats.ts';
import { memorySource } from '../src/onnx/weight-source.ts';

async function timeRuns(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetch: string[], n: number): Promise<number> {
  const f = Object.fromEntries(s.inputNames.map((k) => [k, feeds[k]!]));
  for (let i = 0; i < 2; i++) await s.run(f, fetch);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await s.run(f, fetch);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)]!;
}

async function compare(label: string, model: ModelProto, wrt: string[], B: number, T: number, vocab: number, n: number): Promise<void> {
  const windows = Array.from({ length: B }, (_, b) => Int32Array.from({ length: T }, (_, t) => (b * 7919 + t * 104729) % vocab));
  const withLoss = appendLoss(model);
  const feeds = tokenFeeds(withLoss, windows);
  const fwd = await createSession(model);
  const fwdLoss = await createSession(withLoss);
  const tBuild = performance.now();
  const grad = await createSession(await buildGradientGraph(withLoss, { loss: 'loss', wrt, feeds }));
  const buildMs = performance.now() - tBuild;
  const f = await timeRuns(fwd, feeds, ['logits'], n);
  const fl = await timeRuns(fwdLoss, feeds, ['loss'], n);
  const g = await timeRuns(grad, feeds, [...grad.outputNames], n);
  console.log(`${label} [${B}x${T}], gradients of ${wrt.length} tensors (graph built in ${(buildMs / 1000).toFixed(1)} s):`);
  console.log(`  forward (logits)      ${f.toFixed(1)} ms`);
  console.log(`  forward + loss        ${fl.toFixed(1)} ms`);
  console.log(`  loss + gradients      ${g.toFixed(1)} ms   ratio ${(g / f).toFixed(2)}x forward, ${(g / fl).toFixed(2)}x forward+loss; ${Math.round((B * T) / (g / 1000))} tokens/s`);
  await fwd.release();
  await fwdLoss.release();
  await grad.release();
}

/** Wall time of G over `windows`: whole-model gradient graph, then block by block. */
async function streamedVsWhole(model: ModelProto, windows: Int32Array[]): Promise<void> {
  const layers = discoverLayers(model);
  let t = performance.now();
  await computeGradientNorms(model, layers, windows);
  const whole = performance.now() - t;
  const scratch = ScratchFloats.open();
  t = performance.now();
  try {
    await streamedGradientNormsToScratch(memorySource(model), layers, windows, scratch);
  } finally {
    scratch.close();
  }
  const streamed = performance.now() - t;
  console.log(`G of ${layers.length} layers over ${windows.length} x ${windows[0]!.length} tokens:`);
  console.log(`  whole-model gradient graph  ${(whole / 1000).toFixed(2)} s`);
  console.log(`  block by block              ${(streamed / 1000).toFixed(2)} s   ratio ${(streamed / whole).toFixed(2)}x whole-model`);
}

export async function run(): Promise<void> {
  const cfgPath = join(REPO_ROOT, 'models', 'brown-llama.train.json');
  const cfg = parseTrainConfig(JSON.parse(readFileSync(cfgPath, 'utf8')), cfgPath, join(REPO_ROOT, 'models'));
  const bundled = join(BUNDLED_MODEL_DIR, 'model.onnx');
  const model = existsSync(bundled) ? await loadModel(bundled) : buildLlama(cfg.model, initLlamaWeights(cfg.model, 1));
  console.log(existsSync(bundled) ? `bundled model ${bundled}` : `bundled model not built yet: a fresh model of ${cfgPath}`);
  const specs = llamaWeightSpecs(cfg.model);
  await compare('training step', model, specs.map((s) => s.name), cfg.batchSize, cfg.seqlen, cfg.model.vocabSize, 5);
  const linear = specs.filter((s) => s.kind === 'linear' && s.name.includes('layers.')).map((s) => s.name);
  await compare('G statistics (one calibration window)', model, linear, 1, cfg.seqlen, cfg.model.vocabSize, 9);
  const windows = Array.from({ length: 16 }, (_, b) => Int32Array.from({ length: cfg.seqlen }, (_, t) => (b * 7919 + t * 104729) % cfg.model.vocabSize));
  await streamedVsWhole(model, windows);
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
