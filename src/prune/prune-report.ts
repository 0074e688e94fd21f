/**
 * prune.json: everything needed to know what a pruned model folder holds and to redo
 * it: the metric or method, the settings and calibration data, achieved sparsity per
 * layer and overall, perplexity when evaluated, and timings.
 */
import type { Tree } from '../search-space/index.ts';
import { toPrunerZeroJson, toTreeJson } from '../search-space/index.ts';
import type { PruneResult } from './prune-model.ts';
import type { TaskResult } from '../eval/zero-shot.ts';

export interface PruneReportInput {
  result: PruneResult;
  /** The input model file. */
  model: string;
  tree?: Tree;
  calibrationData: string | null;
  seed: number;
  statsFile: string | null;
  /** Perplexity of the pruned model, with --eval. */
  eval?: { data: string; ppl: number; nll: number; tokens: number; seqlen: number; seconds: number; tasks?: Record<string, TaskResult> } | null;
  /** Wall time of the whole command. */
  seconds: number;
  externalData?: string | null;
}

export interface PruneReport {
  tool: 'symprune';
  kind: 'prune';
  created: string;
  model: string;
  method: string;
  metric: { infix: string; tree: unknown; prunerZero: unknown } | null;
  sparsity: number;
  pattern: string;
  grouping: string;
  calibration: { mode: string; data: string | null; nsamples: number; seqlen: number; seed: number; statsFile: string | null };
  achieved: { pruned: number; total: number; sparsity: number };
  /** Layer-wise sparsity: `uniform`, or OWL's (or a given) sparsity per decoder block. */
  allocation: PruneResult['allocation'];
  layers: Array<{ name: string; block: number; shape: [number, number]; pruned: number; sparsity: number; rowMin: number; rowMax: number; nanCount: number }>;
  eval: PruneReportInput['eval'];
  externalData: string | null;
  seconds: PruneResult['seconds'] & { command: number };
}

function round(v: number, digits = 6): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function buildPruneReport(i: PruneReportInput, grouping: string): PruneReport {
  const r = i.result;
  return {
    tool: 'symprune',
    kind: 'prune',
    created: new Date().toISOString(),
    model: i.model,
    method: r.method,
    metric: i.tree ? { infix: r.label, tree: toTreeJson(i.tree), prunerZero: toPrunerZeroJson(i.tree) } : null,
    sparsity: r.sparsity,
    pattern: r.pattern,
    grouping: r.pattern === 'unstructured' ? grouping : `${r.pattern} groups`,
    calibration: { mode: r.calibration, data: i.calibrationData, nsamples: r.nsamples, seqlen: r.seqlen, seed: i.seed, statsFile: i.statsFile },
    achieved: { pruned: r.overall.pruned, total: r.overall.total, sparsity: round(r.overall.sparsity) },
    allocation: { name: r.allocation.name, blocks: r.allocation.blocks.map((b) => ({ ...b, sparsity: round(b.sparsity, 9) })) },
    layers: r.layers.map((l) => ({ name: l.name, block: l.block, shape: [l.out, l.in], pruned: l.pruned, sparsity: round(l.sparsity), rowMin: round(l.rowMin), rowMax: round(l.rowMax), nanCount: l.nanCount })),
    eval: i.eval ?? null,
    externalData: i.externalData ?? null,
    seconds: { ...r.seconds, command: round(i.seconds, 3) },
  };
}
