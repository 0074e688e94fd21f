/**
 * `npm run bench [-- NAME...]`: runs every bench/*.bench.ts (or those whose file name
 * contains one of the given words) one after another, each in its own process, so that
 * neither timings nor peak-memory figures are disturbed by another benchmark. Each
 * benchmark prints its own figures and the ratio to its in-run baseline.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);

if (args[0] === '--one') {
  const mod = (await import(pathToFileURL(args[1]!).href)) as { run: () => Promise<void> };
  await mod.run();
} else {
  const files = readdirSync(here)
    .filter((f) => f.endsWith('.bench.ts'))
    .filter((f) => args.length === 0 || args.some((w) => f.includes(w)))
    .sort();
  let failed = 0;
  for (const f of files) {
    console.log(`\n## ${f.replace('.bench.ts', '')}`);
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--one', join(here, f)], { stdio: 'inherit' });
    if (r.status !== 0) failed++;
    console.log(`(${f}: ${((performance.now() - t0) / 1000).toFixed(1)} s${r.status !== 0 ? `, FAILED with exit code ${r.status}` : ''})`);
  }
  if (failed > 0) process.exitCode = 1;
}
