/**
 * SparseGPT on one TinyLlama down_proj-shaped layer ([2048, 5632], 5632-wide Hessian):
 * the time to factor H⁻¹ (onnxruntime float64 products), then the OBS loop with the
 * float32 onnxruntime lazy updates in this thread (the baseline) and on worker threads
 * (--threads: all cores), measured in the same run, their ratio, and whether the two
 * results are bit for bit the same. SGPT_BENCH_F64=1 adds the float64 (JavaScript)
 * lazy updates, one thread against all (minutes). SGPT_BENCH_ROWS / SGPT_BENCH_COLS
 * change the shape. The Hessian is a random well-conditioned symmetric matrix: the
 * cost does not depend on its values.
 */
import os from 'node:os';
import seedrandom from 'seedrandom';
import { HessianAccumulator, lazyUpdateJs, sparseGptPrepared, type LazyUpdate, type SparseGptResult } from '../src/prune/sparsegpt.ts';
import { lazyUpdateOrt } from '../src/prune/sparsegpt-ort.ts';
import { closeSparseGptThreads, sparseGptThreaded, threadCount } from '../src/prune/sparsegpt-threads.ts';
import { preparedBlocked } from '../src/prune/dense-linalg-ort.ts';

const ROWS = Number(process.env.SGPT_BENCH_ROWS ?? 2048);
const COLS = Number(process.env.SGPT_BENCH_COLS ?? 5632);

function randomHessian(cols: number, seed: string): HessianAccumulator {
  const rng = seedrandom(seed);
  const g = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < i; j++) g[i * cols + j] = g[j * cols + i] = (rng() - 0.5) * 0.02;
    g[i * cols + i] = 50 + 10 * rng();
  }
  const acc = new HessianAccumulator(cols);
  acc.add(g, 2);
  return acc;
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await f();
  return [r, (performance.now() - t) / 1000];
}

const same = (a: Float32Array, b: Float32Array, ra: SparseGptResult, rb: SparseGptResult) =>
  Buffer.from(a.buffer).equals(Buffer.from(b.buffer)) && Buffer.from(ra.mask).equals(Buffer.from(rb.mask)) ? 'identical' : 'DIFFERENT';

export async function run(): Promise<void> {
  const threads = threadCount(undefined);
  console.log(`layer [${ROWS}, ${COLS}], 50% unstructured; ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const acc = randomHessian(COLS, 'bench');
  const [prep, tFactor] = await timed(() => preparedBlocked(acc));
  console.log(`H⁻¹ factor (${COLS} wide, float64 products in onnxruntime): ${tFactor.toFixed(1)} s`);
  const rng = seedrandom('w');
  const w0 = Float32Array.from({ length: ROWS * COLS }, () => rng() * 2 - 1);
  const opts = { sparsity: 0.5 };
  try {
    const variants: Array<[string, (u: LazyUpdate) => void | Promise<void>, 'ort' | 'js']> = [['float32 onnxruntime lazy updates', lazyUpdateOrt, 'ort']];
    if (process.env.SGPT_BENCH_F64) variants.push(['float64 JavaScript lazy updates', lazyUpdateJs, 'js']);
    for (const [label, lazy, how] of variants) {
      const a = Float32Array.from(w0);
      const [ra, t1] = await timed(() => sparseGptPrepared(a, ROWS, prep, opts, lazy));
      const b = Float32Array.from(w0);
      const [rb, tn] = await timed(() => sparseGptThreaded(b, ROWS, prep, opts, { threads, lazy: how }));
      console.log(`OBS loop, ${label}: 1 thread ${t1.toFixed(1)} s, ${threads} threads ${tn.toFixed(1)} s, ratio ${(t1 / tn).toFixed(2)}x; results ${same(a, b, ra, rb)}`);
    }
  } finally {
    await closeSparseGptThreads();
  }
  console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
}
