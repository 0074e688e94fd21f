/** What the search tests run on: a tiny LLaMA saved as model.onnx, and fitness and calibration token files beside it. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildLlama } from '../../src/onnx/llama-builder.ts';
import { initLlamaWeights } from '../../src/onnx/llama-weights.ts';
import { saveModel } from '../../src/onnx/model-io.ts';
import type { ModelProto } from '../../src/onnx/proto.ts';
import { structuredTokens } from './token-stream.ts';

export const TINY = { vocabSize: 64, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, maxPositions: 64, ropeTheta: 10000, normEps: 1e-5 };

/** The model (in memory) and `ready`, which resolves once dir holds model.onnx, fit.bin and calib.bin. */
export function searchFixture(dir: string, o: { layers?: number; weightSeed?: number; fitTokens: number; calibTokens: number }): { model: ModelProto; ready: Promise<void> } {
  const cfg = { ...TINY, layers: o.layers ?? TINY.layers };
  const model = buildLlama(cfg, initLlamaWeights(cfg, o.weightSeed ?? 1, 0.2));
  const ready = (async () => {
    await saveModel(model, join(dir, 'model.onnx'));
    writeFileSync(join(dir, 'fit.bin'), structuredTokens(o.fitTokens, 1));
    writeFileSync(join(dir, 'calib.bin'), structuredTokens(o.calibTokens, 2));
  })();
  return { model, ready };
}
