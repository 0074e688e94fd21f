/** The overall sparsity of a pruned model, counted from its prunable layers' zeros (as a user would check it). */
import assert from 'node:assert/strict';
import type { ModelProto } from '../../src/onnx/proto.ts';
import { discoverLayers, readLayerWeight } from '../../src/prune/discover.ts';

/**
 * Asserts that the share of zero weights is s to the per-row rounding: each row prunes
 * floor(in · s_layer), so less than one weight per row, 1/in of a layer, goes unpruned.
 */
export function assertOverallSparsity(model: ModelProto, s: number, what: string): number {
  const layers = discoverLayers(model);
  let zeros = 0;
  let total = 0;
  for (const l of layers) {
    const w = readLayerWeight(model, l);
    for (const v of w) if (v === 0) zeros++;
    total += w.length;
  }
  const maxLoss = Math.max(...layers.map((l) => 1 / l.in));
  assert.ok(zeros / total <= s + 1e-12 && zeros / total > s - maxLoss, `${what}: overall sparsity ${zeros / total}`);
  return zeros / total;
}
