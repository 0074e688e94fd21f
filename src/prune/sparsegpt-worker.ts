/**
 * A worker thread of SparseGPT's row-parallel OBS loop (sparsegpt-threads.ts): it runs
 * obsSteps on its rows of the shared buffers one column block per request, applying
 * the lazy update of its rows itself (float64) or leaving it to the main thread.
 */
import { parentPort } from 'node:worker_threads';
import { lazyUpdateJs, obsSteps, type LazyUpdate, type ObsBuffers, type SparseGptOptions } from './sparsegpt.ts';

export interface StartRequest {
  type: 'start';
  W: Float64Array;
  mask: Uint8Array;
  err: Float64Array;
  loss: Float64Array;
  hinv: Float64Array;
  dead: Uint8Array;
  rows: number;
  cols: number;
  opts: SparseGptOptions;
}
export interface StepRequest {
  type: 'step';
  /** Apply this block's lazy update to the worker's rows in float64 (else the main thread does it). */
  lazyJs: boolean;
}
export type StepReply = { done: true } | { done: false; i1: number; i2: number; count: number };
export type Reply = { ok: StepReply | null } | { error: string };

let steps: Generator<LazyUpdate, void, void> | null = null;

function handle(msg: StartRequest | StepRequest): StepReply | null {
  if (msg.type === 'start') {
    const b: ObsBuffers = { W: msg.W, mask: msg.mask, err: msg.err, loss: msg.loss };
    steps = obsSteps(b, msg.rows, msg.cols, { cols: msg.cols, hinv: msg.hinv, dead: msg.dead }, msg.opts);
    return null;
  }
  if (!steps) throw new Error('sparsegpt worker: step before start');
  const s = steps.next();
  if (s.done) {
    steps = null;
    return { done: true };
  }
  if (msg.lazyJs) lazyUpdateJs(s.value);
  return { done: false, i1: s.value.i1, i2: s.value.i2, count: s.value.count };
}

parentPort!.on('message', (msg: StartRequest | StepRequest) => {
  let reply: Reply;
  try {
    reply = { ok: handle(msg) };
  } catch (e) {
    steps = null;
    reply = { error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  parentPort!.postMessage(reply);
});
