/**
 * Float32 arrays parked on disk while a long computation runs (the G of every layer and
 * the hidden states that block-by-block gradients keep), so memory holds only what is
 * in use. The file lives in the system's temporary folder and is unlinked as soon as it
 * is open (where the platform allows), so a killed process leaves nothing behind.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const CHUNK = 1 << 30;

export class ScratchFloats {
  private end = 0;
  private readonly at = new Map<string, { offset: number; length: number; dims: number[] }>();
  private unlinked = false;
  private constructor(private fd: number, readonly file: string) {}

  /** A new scratch file in `dir` (default: the system's temporary folder). */
  static open(dir: string = os.tmpdir()): ScratchFloats {
    const file = path.join(dir, `symprune-scratch-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`);
    const s = new ScratchFloats(fs.openSync(file, 'w+'), file);
    try {
      fs.unlinkSync(file);
      s.unlinked = true;
    } catch {
      // Windows keeps open files: removed on close instead.
    }
    return s;
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.end;
  }

  /** Store `data` (shape `dims`) under `key`, replacing what the key held. */
  put(key: string, data: Float32Array, dims: number[] = [data.length]): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (let off = 0; off < bytes.length; ) off += fs.writeSync(this.fd, bytes, off, Math.min(bytes.length - off, CHUNK), this.end + off);
    this.at.set(key, { offset: this.end, length: data.length, dims });
    this.end += bytes.length;
  }

  has(key: string): boolean {
    return this.at.has(key);
  }

  dims(key: string): number[] {
    return this.entry(key).dims;
  }

  /** The array stored under `key`, read back. */
  get(key: string): Float32Array {
    const e = this.entry(key);
    const out = new Float32Array(e.length);
    const bytes = new Uint8Array(out.buffer);
    for (let off = 0; off < bytes.length; ) {
      const got = fs.readSync(this.fd, bytes, off, Math.min(bytes.length - off, CHUNK), e.offset + off);
      if (got <= 0) throw new Error(`scratch ${this.file}: short read of ${key}`);
      off += got;
    }
    return out;
  }

  private entry(key: string): { offset: number; length: number; dims: number[] } {
    const e = this.at.get(key);
    if (!e) throw new Error(`scratch: nothing stored under ${key}`);
    return e;
  }

  /** Close and remove the file. */
  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
    if (!this.unlinked) fs.rmSync(this.file, { force: true });
  }
}
