/**
 * The engine's only source of randomness: seedrandom's ARC4 generator, whose full state
 * serialises to JSON, so a resumed run draws exactly the numbers the uninterrupted run would.
 */
import { createHash } from 'node:crypto';
import seedrandom from 'seedrandom';

export type RngState = seedrandom.State.Arc4;

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
  state(): RngState;
}

/**
 * ARC4 repeats its key cyclically, so seedrandom('1') and seedrandom('11') are the same
 * stream; the key is therefore the SHA-256 of the seed (fixed length, no such collisions).
 */
export function createRng(seed: string, state?: RngState): Rng {
  const key = createHash('sha256').update(`symprune-gp:${seed}`).digest('hex');
  const prng = state ? seedrandom('', { state }) : seedrandom(key, { state: true });
  const next = () => prng();
  const int = (n: number) => {
    if (!(n >= 1)) throw new Error(`rng.int needs n >= 1, got ${n}`);
    return Math.floor(prng() * n);
  };
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => {
      if (items.length === 0) throw new Error('rng.pick from an empty list');
      return items[int(items.length)]!;
    },
    state: () => prng.state(),
  };
}
