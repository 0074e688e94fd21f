/**
 * Metric kernels: compiled (compileTree) against the reference interpreter on a 4096 x 4096
 * layer for representative trees, and the kernels' throughput beside a plain Float32Array
 * copy measured in the same run. Then masks on a LLaMA-7B MLP-sized layer (4096 x 11008).
 *
 * Throughput counts the bytes a kernel must touch at least once: 4 bytes per element for each
 * full-size input it reads (W, G) plus 4 for the output. The copy baseline moves a 4096 x 4096
 * Float32Array (64 MiB read + 64 MiB written). Times are the best of several runs after a
 * warm-up call (the first call also pays for V8's optimisation of the generated code).
 */
import {
  compileTree,
  interpret,
  parseMetric,
  randomTerminalData,
  terminalsOf,
  unstructuredMask,
  nmMask,
  type TerminalData,
} from '../src/search-space/index.ts';

const TREES: [string, string][] = [
  ['magnitude', 'W'],
  ['wanda', 'mul(W,sqrt(X))'],
  ['pruner-zero (published)', 'mul(abs(mul(W,W)),mms(G))'],
  ['gblm', 'add(mul(W,sqrt(X)),mul(W,G))'],
  ['nested reductions', 'mms(zsn(mul(G,mms(W))))'],
  ['div + sqrt', 'div(mul(W,sqrt(X)),sqrt(G))'],
  ['log/tanh + zsn/mms', 'add(zsn(log(mul(W,G))),mms(tanh(mul(W,X))))'],
];

function best(runs: number, f: () => void): number {
  let b = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    f();
    b = Math.min(b, performance.now() - t0);
  }
  return b;
}

const gbps = (bytes: number, ms: number) => bytes / 1e9 / (ms / 1e3);
const pad = (s: string, n: number) => s.padEnd(n);
const num = (x: number, d = 1) => x.toFixed(d).padStart(8);

export async function run(): Promise<void> {
  const N = 4096;
  const data: TerminalData = randomTerminalData('kernels-bench', N, N, { profile: 'llm' });
  const n = N * N;
  const src = data.W;
  const dst = new Float32Array(n);
  dst.set(src);
  const copyMs = best(7, () => dst.set(src));
  const copyGBs = gbps(8 * n, copyMs);
  console.log(`layer ${N} x ${N}; Float32Array copy of ${((4 * n) / 2 ** 20).toFixed(0)} MiB: ${copyMs.toFixed(1)} ms = ${copyGBs.toFixed(2)} GB/s (read + write)`);
  console.log(
    `${pad('tree', 26)}${'passes'.padStart(7)}${'compile'.padStart(9)}${'first'.padStart(8)}${'kernel'.padStart(8)}${'interp'.padStart(8)}${'speedup'.padStart(9)}${'GB/s'.padStart(8)}${'vs copy'.padStart(9)}`,
  );
  const out = new Float32Array(n);
  for (const [name, infix] of TREES) {
    const tree = parseMetric(infix);
    const t0 = performance.now();
    const kernel = compileTree(tree);
    const compileMs = performance.now() - t0;
    const t1 = performance.now();
    kernel(data, out);
    const firstMs = performance.now() - t1;
    const kernelMs = best(4, () => kernel(data, out));
    let ref: Float32Array | null = null;
    const interpMs = best(2, () => {
      ref = interpret(tree, data);
    });
    for (let i = 0; i < n; i++) {
      if (!Object.is(out[i], ref![i])) throw new Error(`${name}: kernel and interpreter differ at ${i}`);
    }
    const inputs = [...terminalsOf(tree)].filter((t) => t !== 'X').length;
    const bytes = 4 * n * (inputs + 1);
    const g = gbps(bytes, kernelMs);
    console.log(
      `${pad(name, 26)}${String(kernel.passes).padStart(7)}${num(compileMs, 2)} ${num(firstMs, 0)}${num(kernelMs)}${num(interpMs, 0)}${num(interpMs / kernelMs)}x${num(g, 2)}${num(g / copyGBs, 2)}x`,
    );
    kernel.release();
  }
  console.log('(times in ms; speedup = interpreter / kernel; vs copy = kernel GB/s / copy GB/s)');

  // Masks on a 4096 x 11008 layer (LLaMA-7B up/gate projections).
  const R = 4096;
  const C = 11008;
  const big = randomTerminalData('kernels-bench-mlp', R, C, { profile: 'llm' });
  const bigCopy = new Float32Array(R * C);
  const bigCopyMs = best(3, () => bigCopy.set(big.W));
  const wanda = compileTree(parseMetric('mul(W,sqrt(X))'));
  const pz = compileTree(parseMetric('mul(abs(mul(W,W)),mms(G))'));
  const scores = new Float32Array(R * C);
  wanda(big, scores);
  const wandaMs = best(3, () => wanda(big, scores));
  pz(big, scores);
  const pzMs = best(3, () => pz(big, scores));
  const maskMs = best(3, () => unstructuredMask(scores, R, C, 0.5));
  const nmMs = best(3, () => nmMask(scores, R, C, 2, 4));
  console.log(`layer ${R} x ${C}: copy ${bigCopyMs.toFixed(0)} ms; wanda kernel ${wandaMs.toFixed(0)} ms; pruner-zero kernel ${pzMs.toFixed(0)} ms;`);
  console.log(
    `  unstructured 50% mask ${maskMs.toFixed(0)} ms (${(maskMs / bigCopyMs).toFixed(1)}x copy), 2:4 mask ${nmMs.toFixed(0)} ms (${(nmMs / bigCopyMs).toFixed(1)}x copy)`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
