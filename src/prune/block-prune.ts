/**
 * Block-streamed pruning, the loop of Wanda, SparseGPT and Pruner-Zero: the
 * calibration windows go through the prelude once, then for each decoder block:
 * its weights are read, it runs once on the carried hidden states with its layers'
 * statistics (X, SparseGPT's Gram matrix) taken inside the session, it is pruned,
 * and the carried states move on through it: through the pruned block (sequential,
 * a second run of this block only) or through the dense one (one-shot, the same
 * run). Its pruned weights are handed to the sink and let go. Cost is linear in
 * depth; memory is one block's weights plus the carried states.
 */
import { InputError } from '../errors.ts';
import type { TensorProto } from '../onnx/proto.ts';
import { SegmentStream, type StreamOptions } from '../onnx/segment-stream.ts';
import type { WeightSource } from '../onnx/weight-source.ts';
import type { PruneMethod } from './baselines.ts';
import { instrumentModel, StatsCollector, type CollectedStats, type Instrumented } from './calibration.ts';
import { readLayerWeight, viewOf, writeLayerWeight, type PrunableLayer } from './discover.ts';
import type { LayerStats } from './layer-stats.ts';
import { pruneLayerWeight, type LayerReport } from './prune-layer.ts';
import { ScoreScratch, type MaskSpec } from './score.ts';
import { releaseSparseGptBlock } from './sparsegpt-threads.ts';

export type CalibrationMode = 'one-shot' | 'sequential';

export interface BlockPruneOptions extends StreamOptions {
  method: PruneMethod;
  spec: MaskSpec;
  mode: CalibrationMode;
  layers: PrunableLayer[];
  /** Calibration windows; when absent, nothing runs and `stats` gives every statistic. */
  windows?: Int32Array[];
  /** Sparsity of a decoder block when it is not spec.sparsity (layer-wise allocation). */
  blockSparsity?: ReadonlyMap<number, number>;
  /** Statistics not measured here (G, or X from a file). */
  stats: (layer: PrunableLayer) => LayerStats;
  /** Receives each block's pruned tensors (after they were written into them). */
  sink?: (tensors: TensorProto[]) => Promise<void>;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface BlockPruneResult {
  reports: LayerReport[];
  seconds: { calibration: number; prune: number };
}

/** Layers grouped by block in pruning order: decoder blocks ascending, layers outside blocks (-1) last. */
export function blocksOf(layers: PrunableLayer[]): PrunableLayer[][] {
  const keys = [...new Set(layers.map((l) => l.block))].sort((a, b) => (a < 0 ? 1 : b < 0 ? -1 : a - b));
  return keys.map((k) => layers.filter((l) => l.block === k));
}

/** Prune every layer of `o.layers` block by block (see the file comment). */
export async function pruneBlocks(source: WeightSource, o: BlockPruneOptions): Promise<BlockPruneResult> {
  const seconds = { calibration: 0, prune: 0 };
  const reports: LayerReport[] = [];
  const scratch = new ScoreScratch();
  const progress = o.onProgress ?? (() => {});
  const oneShot = o.mode === 'one-shot';
  const stream = o.windows ? new SegmentStream(source, o.windows, o) : null;
  const timed = async <T>(key: 'calibration' | 'prune', f: () => Promise<T> | T): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      seconds[key] += (performance.now() - t) / 1000;
    }
  };
  let next = 0; // next block segment the carried states have not been through
  if (stream) await timed('calibration', () => stream.run(stream.prelude));
  const groups = blocksOf(o.layers);
  let done = 0;
  for (const group of groups) {
    const b = group[0]!.block;
    const segIndex = b < 0 ? (stream?.plan.blocks ?? 0) : b;
    if (stream && segIndex > stream.plan.blocks) throw new InputError(`layer ${group[0]!.name} is in block ${b}, but the graph has ${stream.plan.blocks} blocks`);
    const spec = stream ? (b < 0 ? stream.tail : stream.block(b)) : null;
    const label = b < 0 ? 'head' : `block ${b + 1}/${stream?.plan.blocks ?? groups.length}`;
    // Blocks with nothing to prune still move the carried states on.
    if (stream) for (; next < segIndex; next++) await timed('calibration', () => stream.run(stream.block(next)));
    const tensors = await source.resolve(spec ? spec.initializers : [...new Set(group.map((l) => l.initializer))]);
    const view = viewOf(tensors);
    let collected: CollectedStats | null = null;
    if (stream && spec) {
      let inst: Instrumented | null = null;
      let collector: StatsCollector | null = null;
      let batches = 0;
      await timed('calibration', () =>
        stream.run(spec, {
          tensors,
          advance: oneShot,
          transform: (m) => (inst = instrumentModel(m, group, { sumSquares: o.method.needs.X, gram: o.method.kind === 'sparsegpt', keepOutputs: oneShot })).model,
          onBatch: (_, out, n) => {
            (collector ??= new StatsCollector(inst!)).add(out, n);
            progress(`calibration ${label}`, ++batches, stream.batches.length);
          },
        }),
      );
      collected = collector!.result();
    }
    for (const layer of group) {
      await timed('prune', async () => {
        const st = o.stats(layer);
        const w = readLayerWeight(view, layer);
        const spec = { ...o.spec, sparsity: o.blockSparsity?.get(layer.block) ?? o.spec.sparsity };
        reports.push(await pruneLayerWeight(o.method, spec, layer, w, { X: collected?.X.get(layer.name) ?? st.X, G: st.G, gram: collected?.gram.get(layer.name) ?? null }, scratch));
        writeLayerWeight(view, layer, w);
      });
      progress('prune', ++done, o.layers.length);
    }
    // The block's statistics (SparseGPT's Hessians) go before the block runs again pruned.
    collected = null;
    if (o.method.kind === 'sparsegpt') await releaseSparseGptBlock();
    if (stream && spec && !oneShot) await timed('calibration', () => stream.run(spec, { tensors }));
    if (stream) next = segIndex + 1;
    const names = new Set(group.map((l) => l.initializer));
    await o.sink?.(tensors.filter((t) => names.has(t.name!)));
  }
  return { reports, seconds };
}
