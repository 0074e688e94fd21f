/** A folder's entries with content hashes (directory mtimes aside): equal snapshots mean nothing was written. */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export function snapshot(root: string): string {
  const lines: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        lines.push(`${path.relative(root, p)}/`);
        walk(p);
      } else lines.push(`${path.relative(root, p)} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}`);
    }
  };
  walk(root);
  return lines.join('\n');
}
