/**
 * Dense-model calibration statistics (X, Gram matrices) of every layer, block by
 * block: each block runs once on the carried hidden states with its statistics
 * taken inside the session, so a model of any size is measured with one block's
 * weights in memory.
 */
import { SegmentStream, type StreamOptions } from '../onnx/segment-stream.ts';
import type { WeightSource } from '../onnx/weight-source.ts';
import { blocksOf } from './block-prune.ts';
import { instrumentModel, StatsCollector, type CollectedStats, type InstrumentOptions, type Instrumented } from './calibration.ts';
import type { PrunableLayer } from './discover.ts';

export interface StreamedStatsOptions extends StreamOptions, InstrumentOptions {
  /** Progress over all block runs: (batches done, batches total). */
  onBatch?: (done: number, total: number) => void;
}

/** X and/or Gram accumulators of `layers` on the dense model (see the file comment). */
export async function streamedStatistics(source: WeightSource, layers: PrunableLayer[], windows: Int32Array[], opts: StreamedStatsOptions): Promise<CollectedStats> {
  const stream = new SegmentStream(source, windows, opts);
  const groups = new Map(blocksOf(layers).map((g) => [g[0]!.block < 0 ? stream.plan.blocks : g[0]!.block, g]));
  const last = Math.max(...groups.keys());
  const total = (last + 2) * stream.batches.length;
  let done = 0;
  const tick = () => opts.onBatch?.(++done, total);
  const X = new Map<string, Float32Array>();
  const gram: CollectedStats['gram'] = new Map();
  await stream.run(stream.prelude, { onBatch: tick });
  for (let s = 0; s <= last; s++) {
    const spec = s === stream.plan.blocks ? stream.tail : stream.block(s);
    const group = groups.get(s);
    if (!group) {
      await stream.run(spec, { onBatch: tick });
      continue;
    }
    let inst: Instrumented | null = null;
    let collector: StatsCollector | null = null;
    await stream.run(spec, {
      advance: s < last,
      transform: (m) => (inst = instrumentModel(m, group, { ...opts, keepOutputs: s < last })).model,
      onBatch: (_, out, n) => {
        (collector ??= new StatsCollector(inst!)).add(out, n);
        tick();
      },
    });
    const r = collector!.result();
    for (const [k, v] of r.X) X.set(k, v);
    for (const [k, v] of r.gram) gram.set(k, v);
  }
  return { X, gram, sequences: windows.length };
}
