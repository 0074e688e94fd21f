/**
 * SharedArrayBuffers handed out again once given back. SparseGPT's worker threads are
 * sent views of the Hessian factors; a thread keeps what it was sent alive until it
 * collects garbage, which an idle thread never does, so a fresh buffer per layer
 * would pile up over a model's blocks (254 MB per block for a 1B model's down_proj).
 * Buffers given back are reused for the next block's matrices of the same size.
 */
const idle = new Map<number, SharedArrayBuffer[]>();

/** A shared buffer of `bytes` bytes, zeroed. */
export function sharedBuffer(bytes: number): SharedArrayBuffer {
  const b = idle.get(bytes)?.pop();
  if (!b) return new SharedArrayBuffer(bytes);
  new Uint8Array(b).fill(0);
  return b;
}

/** Give `b` back for reuse: nothing may use it after. */
export function giveBackShared(b: SharedArrayBuffer): void {
  const list = idle.get(b.byteLength) ?? [];
  if (!list.includes(b)) list.push(b);
  idle.set(b.byteLength, list);
}

/** Let the idle buffers go (when no more layers come). */
export function dropIdleShared(): void {
  idle.clear();
}
