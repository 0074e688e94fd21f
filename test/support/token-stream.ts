/**
 * A token stream with some structure (each id mostly follows from the previous one), so a
 * tiny random model's perplexity differs between pruning metrics. Used as .bin data in
 * end-to-end tests.
 */
export function structuredTokens(n: number, seed: number, vocab = 64): Uint16Array {
  const a = new Uint16Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    a[i] = i % 7 === 0 ? (x >> 8) % vocab : (a[i - 1]! * 3 + 1) % vocab;
  }
  return a;
}
