import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { brownDir, brownDocuments, detagBrown } from '../src/data/brown.ts';
import { assignSplits, brownSplits, SPLITS, splitDocuments, splitText } from '../src/data/splits.ts';

test('Brown: 500 documents in 15 genres, tags stripped', () => {
  const docs = brownDocuments();
  assert.equal(docs.length, 500);
  assert.equal(new Set(docs.map((d) => d.category)).size, 15);
  assert.deepEqual(
    docs.filter((d) => d.id === 'ca01' || d.id === 'cr09').map((d) => [d.id, d.category]),
    [['ca01', 'news'], ['cr09', 'humor']],
  );
  const all = docs.map((d) => d.text).join('\n');
  // No `word/tag` left, no raw `` or '' quotes, no space before closing punctuation.
  assert.equal(/[A-Za-z]\/(nn|vb|at|in|jj|np|cc)\b/.test(all), false);
  assert.equal(all.includes('``'), false);
  assert.equal(all.includes("''"), false);
  assert.equal((all.match(/ [,.;?!]/g) ?? []).length, 0);
  assert.equal(all.includes('; ;'), false);
  assert.ok(all.length > 5_500_000 && all.length < 6_500_000, `${all.length} chars`);
});

test('Brown: ca01 reads as plain English', () => {
  const ca01 = brownDocuments().find((d) => d.id === 'ca01')!.text;
  const lines = ca01.split('\n');
  assert.equal(
    lines[0],
    'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.',
  );
  assert.equal(
    lines[3],
    '"Only a relative handful of such reports was received," the jury said, "considering the widespread interest in the election, the number of voters and the size of this city."',
  );
  // The headline is a paragraph of its own.
  assert.ok(lines.includes('Merger proposed'));
});

test('detagBrown: paragraphs, headlines, quotes, doubled semicolons, abbreviations', () => {
  const raw = [
    '',
    'Big/jj-hl news/nn-hl ',
    "\tHe/pps said/vbd ,/, ``/`` go/vb ''/'' ./.",
    'It/pps rained/vbd ;/. ;/.',
    'we/ppss left/vbd (/( early/rb )/) at/in 5/cd p.m./rb ./.',
    '',
    '',
    "\tShe/pps read/vbd '/' Ulysses/np '/' and/cc slept/vbd ?/.",
  ].join('\n');
  assert.equal(
    detagBrown(raw),
    ['Big news', 'He said, "go." It rained; we left (early) at 5 p.m.', "She read 'Ulysses' and slept?"].join('\n'),
  );
});

test('no word is lost or altered: alphanumeric runs of tagged and readable text agree', () => {
  for (const doc of brownDocuments()) {
    const raw = readFileSync(join(brownDir(), doc.id), 'utf8');
    const words = raw
      .split(/\s+/)
      .filter((t) => t !== '')
      .map((t) => t.slice(0, t.lastIndexOf('/')));
    const before = words.join(' ').match(/[A-Za-z0-9]+/g) ?? [];
    const after = doc.text.match(/[A-Za-z0-9]+/g) ?? [];
    assert.deepEqual(after, before, doc.id);
  }
});

test('splits: disjoint, cover every document, sizes and genre spread as documented', () => {
  const splits = brownSplits();
  const docs = brownDocuments();
  assert.equal(splits.size, docs.length);
  const seen = new Map<string, string>();
  for (const s of SPLITS) {
    for (const d of splitDocuments(s)) {
      assert.equal(seen.has(d.id), false, `${d.id} in two splits`);
      seen.set(d.id, s);
    }
  }
  assert.equal(seen.size, 500);
  const sizes = Object.fromEntries(SPLITS.map((s) => [s, splitDocuments(s).length]));
  assert.deepEqual(sizes, { train: 400, calib: 25, search: 25, test: 50 });
  for (const s of SPLITS) {
    const genres = new Set(splitDocuments(s).map((d) => d.category)).size;
    assert.ok(genres >= 10, `${s} spans only ${genres} genres`);
  }
});

test('splits: identical when recomputed from scratch and independent of input order', () => {
  const ids = brownDocuments().map((d) => ({ id: d.id }));
  const a = assignSplits(ids);
  const b = assignSplits([...ids].reverse());
  assert.deepEqual([...a.entries()].sort(), [...b.entries()].sort());
  assert.deepEqual([...a.entries()].sort(), [...brownSplits().entries()].sort());
});

test('splits: membership equals the documented rule as computed independently (Python hashlib)', () => {
  // Pinned: these must never move, or numbers reported on brown:test stop being comparable.
  for (const s of ['test', 'calib', 'search'] as const) {
    assert.deepEqual(splitDocuments(s).map((d) => d.id), PINNED[s], s);
  }
});

test('splitText joins documents with a blank line', () => {
  const text = splitText('calib');
  const docs = splitDocuments('calib');
  assert.equal(text, docs.map((d) => d.text).join('\n\n'));
  assert.equal(text.split('\n\n').length, docs.length);
});

// Computed with Python from the rule in src/data/splits.ts: sort ids by (genre letter,
// hashlib.sha256(id).hexdigest()), position p mod 20 in {0,10} test, 5 search, 15 calib.
const PINNED = {
  test: ['ca03', 'ca04', 'ca14', 'ca15', 'ca18', 'cb01', 'cb08', 'cb11', 'cc03', 'cd01', 'cd16', 'ce05', 'ce17', 'ce25', 'ce32', 'cf06', 'cf09', 'cf10', 'cf20', 'cg01', 'cg27', 'cg28', 'cg29', 'cg30', 'cg33', 'cg40', 'cg65', 'ch17', 'ch21', 'ch22', 'cj09', 'cj13', 'cj17', 'cj18', 'cj28', 'cj43', 'cj46', 'cj70', 'ck03', 'ck21', 'ck23', 'cl03', 'cl04', 'cm04', 'cn07', 'cn09', 'cn21', 'cp10', 'cp15', 'cp23'],
  calib: ['ca27', 'ca31', 'cb27', 'cc14', 'cd11', 'ce23', 'ce27', 'cf45', 'cf48', 'cg52', 'cg55', 'cg66', 'cg75', 'ch12', 'cj01', 'cj03', 'cj05', 'cj61', 'ck02', 'ck18', 'cl12', 'cn10', 'cn22', 'cp12', 'cr07'],
  search: ['ca25', 'ca36', 'cb04', 'cb12', 'cc09', 'ce15', 'ce30', 'cf16', 'cf39', 'cf47', 'cg07', 'cg10', 'cg41', 'ch07', 'ch29', 'cj29', 'cj42', 'cj77', 'cj78', 'ck27', 'cl16', 'cl23', 'cn25', 'cp08', 'cp27'],
};
