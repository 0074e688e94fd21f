// Compiles src/ to dist/ (JavaScript and declarations) for the package; run by `npm run build`
// and by prepare (so `npm ci` and `npm pack` build it). An install without dev dependencies
// has no compiler: it then skips the build instead of failing the install.
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';

const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  console.error('symprune build: typescript is not installed (no dev dependencies); dist/ not built');
  process.exit(0);
}
const root = new URL('..', import.meta.url);
rmSync(new URL('dist', root), { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
