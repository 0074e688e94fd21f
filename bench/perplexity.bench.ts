/**
 * Perplexity evaluation throughput (tokens/s) of PerplexityEvaluator beside a bare
 * onnxruntime forward (session.run only, feeds prepared in advance, logits returned)
 * over the same windows, same batch size, same run. Also: the evaluator with every
 * prunable layer replaceable and fed per call (how the search uses it), and with
 * log-softmax in JS instead of in the graph.
 */
import fs from 'node:fs';
import path from 'node:path';
import seedrandom from 'seedrandom';
import { PerplexityEvaluator, type EvaluatorOptions } from '../src/eval/perplexity.ts';
import { BUNDLED_MODEL_DIR } from '../src/model/load.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { buildLlama } from '../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../src/onnx/llama-weights.ts';
import { findInitializer } from '../src/onnx/graph-edit.ts';
import { createSession, ort } from '../src/onnx/session.ts';
import { tensorToFloat32 } from '../src/onnx/tensor.ts';
import { discoverLayers } from '../src/prune/discover.ts';
import type { ModelProto } from '../src/onnx/proto.ts';

const SEQLEN = 128;
const WINDOWS = 64;
/** Timed repetitions, interleaved; the best is reported (least disturbed by other load). */
const REPS = 5;

async function subject(): Promise<{ model: ModelProto; label: string; tokens: Int32Array }> {
  const bundled = path.join(BUNDLED_MODEL_DIR, 'model.onnx');
  if (fs.existsSync(bundled)) {
    const model = await loadModel(bundled);
    const { loadTokens } = await import('../src/data/dataset.ts');
    const tokens = await loadTokens('brown:test', { tokenizerPath: path.join(BUNDLED_MODEL_DIR, 'tokenizer.json') });
    return { model, label: `bundled model ${bundled}, brown:test`, tokens: tokens.subarray(0, WINDOWS * SEQLEN) };
  }
  const cfg = { vocabSize: 4096, dim: 256, layers: 4, heads: 8, kvHeads: 4, ffn: 688, maxPositions: 512, ropeTheta: 10000, normEps: 1e-5 };
  const rng = seedrandom('bench');
  const tokens = Int32Array.from({ length: WINDOWS * SEQLEN }, () => Math.floor(rng() * cfg.vocabSize));
  return { model: buildLlama(cfg, initLlamaWeights(cfg, 1)), label: `built model ${JSON.stringify(cfg)} (no bundled model), random tokens`, tokens };
}

function best(xs: number[]): number {
  return Math.min(...xs);
}

export async function run(): Promise<void> {
  const { model, label, tokens } = await subject();
  const windows = Math.floor(tokens.length / SEQLEN);
  const n = windows * SEQLEN;
  const vocabEv = await PerplexityEvaluator.create(model);
  const batch = Math.min(windows, Math.max(1, Math.min(16, Math.floor((32 * 2 ** 20) / (SEQLEN * vocabEv.vocabSize)))));
  await vocabEv.release();

  // Bare forward: feeds built before timing, logits returned, nothing else.
  const bare = await createSession(model);
  const declared = new Set((model.graph!.input ?? []).map((v) => v.name));
  const batches: Record<string, ort.Tensor>[] = [];
  for (let w0 = 0; w0 < windows; w0 += batch) {
    const b = Math.min(batch, windows - w0);
    const ids = new BigInt64Array(b * SEQLEN);
    for (let i = 0; i < ids.length; i++) ids[i] = BigInt(tokens[w0 * SEQLEN + i]!);
    const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', ids, [b, SEQLEN]) };
    if (declared.has('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', new BigInt64Array(b * SEQLEN).fill(1n), [b, SEQLEN]);
    if (declared.has('position_ids')) feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from({ length: b * SEQLEN }, (_, i) => BigInt(i % SEQLEN)), [b, SEQLEN]);
    batches.push(feeds);
  }
  const bareRun = async (): Promise<number> => {
    const t0 = performance.now();
    for (const f of batches) await bare.run(f, ['logits']);
    return (performance.now() - t0) / 1000;
  };

  const layers = discoverLayers(model);
  const replaceable = layers.map((l) => l.initializer);
  const weights: Record<string, Float32Array> = {};
  for (const l of layers) weights[l.initializer] = tensorToFloat32(findInitializer(model, l.initializer)!);
  const variants: Array<{ name: string; opts: EvaluatorOptions; weights?: Record<string, Float32Array> }> = [
    { name: 'PerplexityEvaluator', opts: {} },
    { name: `  with ${layers.length} replaceable layers fed per call`, opts: { replaceable }, weights },
    { name: '  with log-softmax in JS', opts: { logSoftmax: 'js' } },
  ];
  const evs = await Promise.all(variants.map((v) => PerplexityEvaluator.create(model, v.opts)));
  const times: number[][] = [[], ...variants.map(() => [])];
  let ppl = NaN;
  await bareRun(); // warm-up
  for (const [i, ev] of evs.entries()) await ev.evaluate(tokens, { seqlen: SEQLEN, batchSize: batch, weights: variants[i]!.weights });
  for (let r = 0; r < REPS; r++) {
    times[0]!.push(await bareRun());
    for (const [i, ev] of evs.entries()) {
      const res = await ev.evaluate(tokens, { seqlen: SEQLEN, batchSize: batch, weights: variants[i]!.weights });
      times[i + 1]!.push(res.seconds);
      if (i === 0) ppl = res.ppl;
    }
  }
  const bareTps = n / best(times[0]!);
  console.log(`perplexity evaluation: ${label}`);
  console.log(`  ${windows} windows x ${SEQLEN} tokens, batch ${batch}, best of ${REPS}; perplexity ${ppl.toFixed(3)}`);
  console.log(`  ${'bare onnxruntime forward (session.run, logits)'.padEnd(52)} ${bareTps.toFixed(0).padStart(8)} tokens/s  (baseline)`);
  variants.forEach((v, i) => {
    const tps = n / best(times[i + 1]!);
    console.log(`  ${v.name.padEnd(52)} ${tps.toFixed(0).padStart(8)} tokens/s  ratio ${(tps / bareTps).toFixed(3)}`);
  });
  await Promise.all(evs.map((e) => e.release()));
  await bare.release();
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
