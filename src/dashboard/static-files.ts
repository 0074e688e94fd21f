/**
 * Files the page loads: its own assets and the chart and formula libraries from the
 * installed packages (no CDN, so the page works offline). A request names a file relative
 * to one folder; anything that resolves outside it, through `..`, an encoded separator, an
 * absolute path or a symlink, is not found.
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.ttf': 'font/ttf',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

export interface StaticFile {
  body: Buffer;
  type: string;
}

/** A folder whose files may be served; `root` is its real path. */
export interface StaticRoot {
  root: string;
}

export function staticRoot(folder: string): StaticRoot {
  return { root: realpathSync(folder) };
}

/**
 * The file at `rel` (URL-encoded, as it came in the request path) under the root, or null
 * when it is missing, not a plain file, of a type we do not serve, or outside the root.
 */
export function readStatic(r: StaticRoot, rel: string): StaticFile | null {
  let name: string;
  try {
    name = decodeURIComponent(rel);
  } catch {
    return null;
  }
  if (name === '' || name.includes('\0') || name.includes('\\') || isAbsolute(name)) return null;
  const type = TYPES[extname(name).toLowerCase()];
  if (!type) return null;
  const full = resolve(r.root, name);
  if (!inside(r.root, full)) return null;
  let real: string;
  try {
    real = realpathSync(full);
    if (!inside(r.root, real) || !statSync(real).isFile()) return null;
    return { body: readFileSync(real), type };
  } catch {
    return null;
  }
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) && !rel.split(sep).includes('..');
}

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/**
 * The page's folder: beside this module when it runs from source; when it runs compiled
 * (dist/dashboard/), the assets, which the compiler does not copy, stay in src/dashboard/static.
 */
function pageFolder(): string {
  const beside = join(here, 'static');
  return existsSync(beside) ? beside : join(here, '..', '..', 'src', 'dashboard', 'static');
}

/** The three folders the dashboard serves: its page, Chart.js's and KaTeX's distributions. */
export function dashboardRoots(): { page: StaticRoot; chart: StaticRoot; katex: StaticRoot } {
  return {
    page: staticRoot(pageFolder()),
    chart: staticRoot(dirname(require.resolve('chart.js'))),
    katex: staticRoot(dirname(require.resolve('katex'))),
  };
}
