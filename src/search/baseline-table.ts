/**
 * The table `symprune baselines` prints, as a library: the dense model and every
 * requested method pruned in one harness (same calibration windows, same test tokens),
 * each row's brown:test perplexity and zero-shot accuracies.
 *
 * A model within the memory budget is held once and every row prunes a copy of it, with
 * G (and dense X where a row reads it) computed once and shared. A larger model is read
 * block by block: each row is pruned from the source into a scratch ONNX file, evaluated
 * block by block and removed, so peak memory stays one block plus the calibration states.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cloneModel } from '../onnx/graph-edit.ts';
import type { ModelProto } from '../onnx/proto.ts';
import { wholeModelBytes } from '../onnx/weight-source.ts';
import type { ModelSource } from '../model/source.ts';
import type { PruneMethod } from '../prune/baselines.ts';
import type { Allocation } from '../prune/allocation.ts';
import type { Pattern } from '../prune/score.ts';
import { MemoryStats, denseGradients, denseX, prunableLayers, pruneModel, type CalibrationMode, type PruneModelOptions } from '../prune/prune-model.ts';
import { pruneModelSource } from '../prune/prune-file.ts';
import { fileOrModelPerplexity, modelPerplexity } from '../eval/perplexity-stream.ts';
import { scoreTasks, type Task, type TaskResult } from '../eval/zero-shot.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import type { PerplexityResult } from '../eval/perplexity.ts';

export interface BaselineRowSpec {
  /** The row's name (e.g. wanda, wanda+owl, metric). */
  name: string;
  method: PruneMethod;
  allocation: Allocation;
}

export interface BaselineTableOptions {
  source: ModelSource;
  rows: BaselineRowSpec[];
  sparsity: number;
  pattern: Pattern;
  calibration: CalibrationMode;
  windows: Int32Array[];
  testTokens: Int32Array;
  seqlen: number;
  evalTokens?: number;
  threads?: number;
  /** Bytes a whole-model session may take; a larger model is run block by block. */
  maxMemory: number;
  /** Zero-shot tasks, scored on models within the memory budget (scoring runs the whole model). */
  tasks?: { tok: Tokenizer; tasks: Task[] };
  /** Folder for the block-by-block scratch model (default: the system's temporary folder). */
  scratchDir?: string;
  onRow?: (name: string, ppl: number) => void;
  onProgress?: (row: string, stage: string, done: number, total: number) => void;
}

export interface BaselineRow {
  method: string;
  ppl: number;
  sparsity: number;
  pruneSeconds: number;
  evalSeconds: number;
  tasks?: Record<string, TaskResult>;
}

export interface BaselineTable {
  dense: { ppl: number; tokens: number; seconds: number; tasks?: Record<string, TaskResult> };
  rows: BaselineRow[];
  /** G computed once on the dense model and shared by the rows that read it (0 when none did, or block by block). */
  gradientSeconds: number;
  /** Whether the model was run block by block (over maxMemory): no zero-shot scores then. */
  streamed: boolean;
}

export async function baselineTable(o: BaselineTableOptions): Promise<BaselineTable> {
  return wholeModelBytes(o.source) <= o.maxMemory ? inMemory(o) : blockByBlock(o);
}

function pruneOptions(o: BaselineTableOptions, row: BaselineRowSpec): PruneModelOptions {
  return {
    method: row.method,
    sparsity: o.sparsity,
    pattern: o.pattern,
    calibration: o.calibration,
    allocation: row.allocation,
    windows: o.windows,
    threads: o.threads,
    onProgress: (stage, done, total) => o.onProgress?.(row.name, stage, done, total),
  };
}

function evalOptions(o: BaselineTableOptions) {
  return { seqlen: o.seqlen, maxTokens: o.evalTokens, threads: o.threads, maxMemory: o.maxMemory };
}

const score = async (o: BaselineTableOptions, model: ModelProto) => (o.tasks ? await scoreTasks(model, o.tasks.tok, o.tasks.tasks, { threads: o.threads }) : undefined);

function denseRow(r: PerplexityResult, tasks: Record<string, TaskResult> | undefined): BaselineTable['dense'] {
  return { ppl: r.ppl, tokens: r.tokens, seconds: r.seconds, tasks };
}

/** The model held once; each row prunes a copy, G and dense X shared. */
async function inMemory(o: BaselineTableOptions): Promise<BaselineTable> {
  const { model } = await o.source.loadAll();
  const layers = prunableLayers(model);
  const dense = await fileOrModelPerplexity(model, o.testTokens, evalOptions(o));
  const denseTasks = await score(o, model);
  const tg = performance.now();
  const needG = o.rows.some((r) => r.method.needs.G);
  const G = needG ? await denseGradients(model, layers, o.windows, { threads: o.threads }) : null;
  const gradientSeconds = needG ? (performance.now() - tg) / 1000 : 0;
  // Dense X: one-shot pruning reads it, and OWL's allocation always does (sequential pruning measures its own).
  const needX = (o.calibration === 'one-shot' && o.rows.some((r) => r.method.needs.X)) || o.rows.some((r) => r.allocation.kind !== 'uniform');
  const X = needX ? await denseX(model, layers, o.windows, { threads: o.threads }) : null;
  const stats = new MemoryStats(X, G);
  const rows: BaselineRow[] = [];
  for (const row of o.rows) {
    const pruned = cloneModel(model);
    const r = await pruneModel(pruned, { ...pruneOptions(o, row), stats, layers });
    const ev = await fileOrModelPerplexity(pruned, o.testTokens, evalOptions(o));
    rows.push({ method: row.name, ppl: ev.ppl, sparsity: r.overall.sparsity, pruneSeconds: r.seconds.total, evalSeconds: ev.seconds, tasks: await score(o, pruned) });
    o.onRow?.(row.name, ev.ppl);
  }
  return { dense: denseRow(dense, denseTasks), rows, gradientSeconds, streamed: false };
}

/** Each row pruned from the source into a scratch file, evaluated block by block, removed. */
async function blockByBlock(o: BaselineTableOptions): Promise<BaselineTable> {
  const dense = await modelPerplexity(o.source, o.testTokens, { ...evalOptions(o), loadAll: async () => (await o.source.loadAll()).model });
  const scratch = fs.mkdtempSync(path.join(o.scratchDir ?? os.tmpdir(), 'symprune-baselines-'));
  try {
    const rows: BaselineRow[] = [];
    for (const row of o.rows) {
      const file = path.join(scratch, 'model.onnx');
      const { result, pruned } = await pruneModelSource(o.source, file, { ...pruneOptions(o, row), maxMemory: o.maxMemory });
      const ev = await fileOrModelPerplexity(pruned.kind === 'memory' ? pruned.model : pruned.file, o.testTokens, evalOptions(o));
      rows.push({ method: row.name, ppl: ev.ppl, sparsity: result.overall.sparsity, pruneSeconds: result.seconds.total, evalSeconds: ev.seconds });
      o.onRow?.(row.name, ev.ppl);
      for (const f of fs.readdirSync(scratch)) fs.rmSync(path.join(scratch, f), { force: true });
    }
    return { dense: denseRow(dense, undefined), rows, gradientSeconds: 0, streamed: true };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
