/**
 * Writes the shipped zero-shot tasks from brown:test:
 *   node --import tsx scripts/make-zero-shot-tasks.ts [OUT_DIR]   (default data/tasks)
 * giving OUT_DIR/brown-last-word.jsonl and OUT_DIR/brown-continuation.jsonl.
 */
import fs from 'node:fs';
import path from 'node:path';
import { splitDocuments } from '../src/data/splits.ts';
import { continuationItems, lastWordItems } from '../src/data/zero-shot-tasks.ts';

const out = process.argv[2] ?? 'data/tasks';
fs.mkdirSync(out, { recursive: true });
const docs = splitDocuments('test');
for (const [name, items] of [
  ['brown-last-word', lastWordItems(docs)],
  ['brown-continuation', continuationItems(docs)],
] as const) {
  const file = path.join(out, `${name}.jsonl`);
  fs.writeFileSync(file, items.map((it) => JSON.stringify(it)).join('\n') + '\n');
  process.stdout.write(`${file}: ${items.length} items\n`);
}
