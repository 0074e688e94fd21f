/**
 * How many positions a decoder graph can embed: the rows of the rotary (or learned position)
 * table that `position_ids` index with a Gather. Feeding a longer window makes onnxruntime
 * fail deep inside that Gather, so commands check their window length against this first.
 */
import type { ModelProto } from './proto.ts';
import { tensorDims } from './tensor.ts';

/** Rows of the smallest table gathered directly by `position_ids`; undefined when the graph has none (positions computed on the fly). */
export function graphMaxPositions(model: ModelProto): number | undefined {
  const g = model.graph;
  const inits = new Map((g?.initializer ?? []).map((t) => [t.name, t]));
  let best: number | undefined;
  for (const n of g?.node ?? []) {
    if (n.opType !== 'Gather' || n.input?.[1] !== 'position_ids') continue;
    const table = inits.get(n.input[0]!);
    const rows = table ? tensorDims(table)[0] : undefined;
    if (rows !== undefined && rows > 0) best = best === undefined ? rows : Math.min(best, rows);
  }
  return best;
}
