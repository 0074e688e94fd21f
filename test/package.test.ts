/**
 * The npm package: `npm pack` (which builds dist/ through prepare), installed without dev
 * dependencies into an empty project, runs `npx symprune eval`, and a script that imports
 * the library by its package name runs a small search with the compiled worker and
 * type-checks against the shipped declarations.
 *
 * Install scripts are skipped: onnxruntime-node ships its CPU binaries in its tarball (its
 * script only fetches CUDA ones), and better-sqlite3's script compiles SQLite for minutes;
 * the addon this checkout compiled is copied instead (same package version, same Node).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '..');
const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };

function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return r;
}

test('the packed tarball installs without dev dependencies and runs the CLI and the library', () => {
  const dir = mkdtempSync(join(tmpdir(), 'symprune-pack-'));
  run('npm', ['pack', '--pack-destination', dir], repo);
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  assert.ok(tgz, 'npm pack wrote a tarball');

  const proj = join(dir, 'project');
  mkdirSync(proj);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'uses-symprune', version: '1.0.0', type: 'module', private: true }));
  run('npm', ['install', '--omit=dev', '--prefer-offline', '--ignore-scripts', join(dir, tgz)], proj);
  const nm = join(proj, 'node_modules');
  for (const devOnly of ['tsx', 'typescript']) assert.throws(() => readdirSync(join(nm, devOnly)), `${devOnly} is not installed`);
  const addon = join('better-sqlite3', 'build', 'Release');
  mkdirSync(join(nm, addon), { recursive: true });
  copyFileSync(join(repo, 'node_modules', addon, 'better_sqlite3.node'), join(nm, addon, 'better_sqlite3.node'));

  // The CLI from the package (compiled JavaScript) gives what the checkout's CLI gives.
  const evalArgs = ['eval', '--data', 'brown:test', '--max-tokens', '2048', '--json'];
  const installed = JSON.parse(run('npx', ['symprune', ...evalArgs], proj).stdout);
  const source = JSON.parse(run(process.execPath, [join(repo, 'bin', 'symprune.mjs'), ...evalArgs], repo).stdout);
  assert.equal(installed.ppl, source.ppl);
  assert.equal(installed.tokens, source.tokens);
  assert.match(installed.model, /node_modules\/symprune\/models\/brown-llama\/model\.onnx$/);

  // The library by name: a tiny search on the bundled model, candidates evaluated by the compiled worker.
  const script = `import { runSearch, resolveModel, parseMetric, toInfix, openDatabase, listRuns, type SearchSummary } from 'symprune';
const tree = parseMetric('mul(W, sqrt(X))');
const sum: SearchSummary = await runSearch({ db: 'lib.sqlite', model: resolveModel(), workers: 1, settings: { population: 4, iterations: 2, batch: 2, nsamples: 2, evalTokens: 512, baselines: [] } });
const db = openDatabase('lib.sqlite', { readonly: true });
console.log(JSON.stringify({ infix: toInfix(tree), status: sum.status, individuals: sum.individuals, short: sum.evaluations.short, runs: listRuns(db).length }));
db.close();
`;
  writeFileSync(join(proj, 'use.ts'), script);
  // Type-checked against the package's declarations (the checkout's compiler; the project has none).
  run(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--target', 'es2022', '--skipLibCheck', '--typeRoots', join(repo, 'node_modules', '@types'), '--types', 'node', 'use.ts'], proj);
  writeFileSync(join(proj, 'use.mjs'), script.replace(', type SearchSummary', '').replace(': SearchSummary', ''));
  const out = JSON.parse(run(process.execPath, ['use.mjs'], proj).stdout.trim().split('\n').pop()!);
  assert.deepEqual({ ...out, short: out.short > 0 }, { infix: 'mul(W,sqrt(X))', status: 'finished', individuals: out.individuals, short: true, runs: 1 });
  assert.ok(out.individuals >= 4);
});
