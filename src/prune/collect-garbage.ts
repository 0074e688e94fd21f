/**
 * A full garbage collection on demand. SparseGPT leaves one block's float64 Hessians
 * (355 MB for a 1B model) and its threads' buffers as garbage when the block is pruned;
 * V8 sees no reason to collect them while the block then runs in onnxruntime (native
 * memory it does not count), and that run's memory lands on top of them. Node exposes
 * gc() only with --expose-gc; setting the flag at run time exposes it in new contexts,
 * as Jest's leak detector does. Where that fails, nothing is collected early.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | null | undefined;

export function collectGarbage(): void {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      const f: unknown = vm.runInNewContext('gc');
      gc = typeof f === 'function' ? (f as () => void) : null;
    } catch {
      gc = null;
    }
  }
  gc?.();
}
