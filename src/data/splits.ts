/**
 * Document-level splits of the Brown corpus. Each document belongs to exactly one split,
 * so text used to train the bundled model, to calibrate, to score candidates during the
 * search and to report final numbers never overlaps.
 *
 * The rule (it depends only on the document ids and genres, so it is the same on every
 * run and machine):
 *   1. sort the 500 documents by genre letter (the second letter of the id: a..r), then by
 *      the hex SHA-256 of the id (`ca01` -> sha256("ca01"));
 *   2. number them p = 0..499 in that order and take p mod 20:
 *        0 or 10 -> test (10%), 5 -> search (5%), 15 -> calib (5%), anything else -> train.
 * Dealing every 20th position of a genre-sorted list spreads each split over the genres
 * in proportion to their size (stratified systematic sampling); the hash order inside a
 * genre decides which documents land where. Sizes: train 400, test 50, search 25, calib 25.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.ts';
import { brownDocuments, type BrownDocument } from './brown.ts';

export const SPLITS = ['train', 'calib', 'search', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];

export function isSplitName(s: string): s is SplitName {
  return (SPLITS as readonly string[]).includes(s);
}

function splitOfPosition(p: number): SplitName {
  const r = p % 20;
  if (r === 0 || r === 10) return 'test';
  if (r === 5) return 'search';
  if (r === 15) return 'calib';
  return 'train';
}

/** Split of every document id, computed from scratch by the rule above (pure). */
export function assignSplits(docs: readonly Pick<BrownDocument, 'id'>[]): Map<string, SplitName> {
  const keyed = docs.map((d) => ({
    id: d.id,
    genre: d.id.slice(1, 2),
    hash: createHash('sha256').update(d.id).digest('hex'),
  }));
  keyed.sort((a, b) => (a.genre < b.genre ? -1 : a.genre > b.genre ? 1 : a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  const out = new Map<string, SplitName>();
  keyed.forEach((d, p) => out.set(d.id, splitOfPosition(p)));
  return out;
}

let memo: Map<string, SplitName> | undefined;

/** Split membership of the Brown documents (memoised). */
export function brownSplits(): Map<string, SplitName> {
  memo ??= assignSplits(brownDocuments());
  return memo;
}

/** Documents of one split, in id order. */
export function splitDocuments(split: SplitName): BrownDocument[] {
  if (!isSplitName(split)) throw new InputError(`unknown Brown split '${split}' (use ${SPLITS.join(', ')})`);
  const splits = brownSplits();
  return brownDocuments().filter((d) => splits.get(d.id) === split);
}

/** Text of one split: its documents in id order, separated by a blank line. */
export function splitText(split: SplitName): string {
  return splitDocuments(split)
    .map((d) => d.text)
    .join('\n\n');
}
