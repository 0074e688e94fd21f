/**
 * SparseGPT on worker threads: the rows of a layer are split among threads that run
 * the OBS loop on their rows of shared buffers (W, mask, errors; H⁻¹ shared read-only).
 * Given H⁻¹ every row's mask choice, errors and updates touch only that row, so the
 * result is bit for bit the one of the single loop (sparseGptPrepared) with the same
 * lazy update: 'js' (float64, each thread on its rows) or 'ort' (the float32
 * onnxruntime product over all rows, on the main thread between column blocks).
 *
 * The threads are started when a layer needs them and kept, unreferenced while idle so
 * they never hold the process open, until closeSparseGptThreads() ends them (pruneBlocks
 * does after each block through releaseSparseGptBlock).
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { finishObs, obsBuffers, obsRows, type PreparedHessian, type SparseGptOptions, type SparseGptResult } from './sparsegpt.ts';
import { lazyUpdateOrt } from './sparsegpt-ort.ts';
import type { Reply, StartRequest, StepReply, StepRequest } from './sparsegpt-worker.ts';
import { collectGarbage } from './collect-garbage.ts';

const WORKER_FILE = new URL(import.meta.url.endsWith('.ts') ? './sparsegpt-worker-entry.mjs' : './sparsegpt-worker.js', import.meta.url);

/** Fewer rows than this per thread are not worth a thread. */
export const MIN_ROWS_PER_THREAD = 64;
/** Layers with less work (rows x cols², the lazy updates' order) stay in the calling thread: starting threads costs more. */
export const MIN_THREADED_WORK = 2 ** 28;

export interface ThreadOptions {
  /** Threads to use (0 or absent: all cores). */
  threads?: number;
  /** Who applies the lazy batch updates (see the file comment). */
  lazy: 'js' | 'ort';
}

/** One worker and its single outstanding request. */
class ObsThread {
  private readonly worker: Worker;
  private pending: { resolve: (r: StepReply | null) => void; reject: (e: Error) => void } | null = null;
  dead: Error | null = null;

  constructor() {
    // The entry registers tsx itself; the parent's loader flags must not be repeated.
    this.worker = new Worker(WORKER_FILE, { execArgv: [] });
    this.worker.unref();
    this.worker.on('message', (r: Reply) => {
      const p = this.pending;
      this.pending = null;
      if (!p) return;
      if ('error' in r) p.reject(new Error(`SparseGPT worker: ${r.error}`));
      else p.resolve(r.ok);
    });
    const fail = (e: Error) => {
      this.dead ??= e;
      this.pending?.reject(e);
      this.pending = null;
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`SparseGPT worker exited with code ${code}`)));
  }

  call(msg: StartRequest | StepRequest): Promise<StepReply | null> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(msg);
    });
  }

  /** Hold the process open while a layer is in flight, not otherwise. */
  hold(on: boolean): void {
    if (on) this.worker.ref();
    else this.worker.unref();
  }

  terminate(): Promise<number> {
    this.dead ??= new Error('SparseGPT worker terminated');
    return this.worker.terminate();
  }
}

let pool: ObsThread[] = [];

function threadsFor(n: number): ObsThread[] {
  pool = pool.filter((t) => !t.dead);
  while (pool.length < n) pool.push(new ObsThread());
  return pool.slice(0, n);
}

/** End the worker threads (they are started again when needed). */
export async function closeSparseGptThreads(): Promise<void> {
  const all = pool;
  pool = [];
  scratch.clear();
  hinvCopied = null;
  await Promise.all(all.map((t) => t.terminate()));
}

/**
 * After a block: the threads keep the views they were sent of the block's shared
 * Hessians (355 MB for a 1B block) alive until they collect garbage, which idle threads
 * never do; ending them, then collecting, frees that memory before the block runs again
 * pruned. Nothing to do when no thread ran (small layers).
 */
export async function releaseSparseGptBlock(): Promise<void> {
  if (pool.length === 0) return;
  await closeSparseGptThreads();
  collectGarbage();
}

/** All cores when `threads` is 0 or absent. */
export function threadCount(threads: number | undefined): number {
  return threads && threads > 0 ? threads : os.availableParallelism();
}

/** How many threads a layer of `rows` rows gets: 1 means stay in this thread. */
export function threadsForRows(rows: number, threads: number | undefined): number {
  return Math.max(1, Math.min(threadCount(threads), Math.floor(rows / MIN_ROWS_PER_THREAD)));
}

/** Threads for a [rows, cols] layer: 1 (stay in this thread) for small layers. */
export function threadsForLayer(rows: number, cols: number, threads: number | undefined): number {
  return rows * cols * cols < MIN_THREADED_WORK ? 1 : threadsForRows(rows, threads);
}

/**
 * The shared memory handed to the threads, one grow-only buffer per use, reused from
 * layer to layer: an idle thread frees what it was sent only when it collects garbage,
 * so fresh buffers per layer would pile up over a model's blocks.
 */
const scratch = new Map<string, SharedArrayBuffer>();
function sharedMemory(name: string, bytes: number): SharedArrayBuffer {
  let b = scratch.get(name);
  if (!b || b.byteLength < bytes) {
    b = new SharedArrayBuffer(bytes);
    scratch.set(name, b);
  }
  return b;
}

/** H⁻¹'s factor in shared memory: as it is when made there (HessianAccumulator), else copied once for consecutive layers of one input (q/k/v, gate/up). */
let hinvCopied: WeakRef<Float64Array> | null = null;
function sharedHinv(hinv: Float64Array): Float64Array {
  if (hinv.buffer instanceof SharedArrayBuffer) return hinv;
  const buf = sharedMemory('hinv', hinv.byteLength);
  const view = new Float64Array(buf, 0, hinv.length);
  if (hinvCopied?.deref() !== hinv) {
    view.set(hinv);
    hinvCopied = new WeakRef(hinv);
  }
  return view;
}

let busy: Promise<unknown> = Promise.resolve();

/** sparseGptPrepared on worker threads (same result, bit for bit, as with the same lazy update in one thread). */
export function sparseGptThreaded(w: Float32Array, rows: number, prep: PreparedHessian, opts: SparseGptOptions, how: ThreadOptions): Promise<SparseGptResult> {
  // One layer at a time: the threads and the shared memory serve one layer.
  const run = busy.then(() => threadedLayer(w, rows, prep, opts, how));
  busy = run.catch(() => {});
  return run;
}

async function threadedLayer(w: Float32Array, rows: number, prep: PreparedHessian, opts: SparseGptOptions, how: ThreadOptions): Promise<SparseGptResult> {
  const cols = prep.cols;
  const blockSize = opts.blockSize ?? 128;
  const b = obsBuffers(w, rows, cols, blockSize, sharedMemory);
  const n = threadsForRows(rows, how.threads);
  const threads = threadsFor(n);
  const hinv = sharedHinv(prep.hinv);
  threads.forEach((t) => t.hold(true));
  try {
    await Promise.all(
      threads.map((t, k) => {
        const r0 = Math.floor((k * rows) / n);
        const r1 = Math.floor(((k + 1) * rows) / n);
        const v = obsRows(b, cols, blockSize, r0, r1);
        return t.call({ type: 'start', ...v, hinv, dead: prep.dead, rows: r1 - r0, cols, opts });
      }),
    );
    for (;;) {
      const replies = await Promise.all(threads.map((t) => t.call({ type: 'step', lazyJs: how.lazy === 'js' })));
      const s = replies[0]!;
      if (s.done) break;
      if (how.lazy === 'ort') await lazyUpdateOrt({ W: b.W, rows, cols, err: b.err, blockSize, count: s.count, i1: s.i1, i2: s.i2, hinv });
    }
  } catch (e) {
    // A failed or half-run loop leaves threads mid-layer: end them, new ones start next time.
    await closeSparseGptThreads();
    throw e;
  } finally {
    threads.forEach((t) => t.hold(false));
  }
  // The mask's memory is reused by the next layer: hand out a copy.
  const r = finishObs(b, w);
  return { mask: r.mask.slice(), loss: r.loss };
}
