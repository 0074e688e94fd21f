#!/usr/bin/env node
// The `symprune` command. An installed package runs its compiled JavaScript (dist/); a
// checkout of the repository runs its TypeScript source through tsx (a dev dependency), so
// what runs is always what was just edited.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
if (existsSync(source) && (await import('tsx/esm/api').then((m) => (m.register(), true)).catch(() => false))) {
  await import(source.href);
} else {
  await import('../dist/cli/main.js');
}
