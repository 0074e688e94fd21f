/**
 * The dashboard's server without a browser: its API against a database whose answers are
 * known, the Pareto front against a brute-force one, live change events while another
 * connection writes, read-only behaviour (the file is byte-identical after every endpoint),
 * static files that cannot leave their folder, and the CLI refusing bad databases with one
 * line and exit 2 before any server starts.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { request, get, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { InputError } from '../src/errors.ts';
import { openSources, closeSources } from '../src/dashboard/sources.ts';
import { startDashboard } from '../src/dashboard/server.ts';
import { readStatic, staticRoot } from '../src/dashboard/static-files.ts';
import { openDatabase } from '../src/store/schema.ts';
import { RunStore } from '../src/store/store.ts';
import { buildReport } from '../src/store/report.ts';
import { FEATURES, featureRows } from '../src/store/queries.ts';
import { queueWorkers, runSummaries } from '../src/dashboard/queries.ts';
import { INDIVIDUALS, makeFixture, WORKERS, XSS_BASELINE, XSS_HOST, XSS_METRIC } from './dashboard-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'symprune-dash-'));
const fixture = join(dir, 'fixture.sqlite');
makeFixture(fixture);
const live = join(dir, 'live.sqlite');
copyFileSync(fixture, live);

const sources = openSources([fixture, live]);
const dash = await startDashboard({ sources, host: '127.0.0.1', port: 0, pollMs: 100 });
after(async () => {
  await dash.close();
  closeSources(sources);
});
const base = new URL(dash.url);

/** A raw request: the path goes on the wire exactly as given (fetch would normalise `..`). */
function raw(path: string, opts: { method?: string; host?: string } = {}): Promise<{ status: number; type: string; body: string }> {
  return new Promise((ok, fail) => {
    const req = request({ host: base.hostname, port: base.port, path, method: opts.method ?? 'GET', headers: { Host: opts.host ?? base.host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => ok({ status: res.statusCode!, type: String(res.headers['content-type'] ?? ''), body }));
    });
    req.on('error', fail);
    req.end();
  });
}

async function api(path: string): Promise<any> {
  const r = await raw(path);
  assert.equal(r.status, 200, `${path}: ${r.body}`);
  return JSON.parse(r.body);
}

const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

test('the runs overview reads every database', async () => {
  const o = await api('/api/overview');
  assert.deepEqual(o.map((d: any) => d.label), ['fixture.sqlite', 'live.sqlite']);
  const s = o[0].runs[0];
  assert.equal(s.status, 'finished');
  assert.deepEqual(s.counts.paid, { short: 5, full: 4 });
  assert.deepEqual(s.counts.failed, { error: 1, timeout: 0, crash: 0 });
  assert.equal(s.counts.reused, 1);
  assert.equal(s.best.id, 7);
  assert.equal(s.best.infix, XSS_METRIC);
  assert.equal(s.best.latex, null, 'a metric that does not parse gets no LaTeX');
  assert.deepEqual(s.bestBaseline, { method: 'wanda', ppl: 141 });
  assert.equal(s.dense, 120);
  assert.equal(s.step, 3);
  assert.equal(s.totalSteps, 2 + 2); // population 4 and 4 iterations in batches of 2
  assert.ok(Math.abs(s.perMinute - 9 / 0.5) < 1e-9, 'nine paid evaluations in 30 s');
  assert.deepEqual(s.workers, { total: 2, busy: 1, idle: 0, gone: 1 });
});

/** The run view once its correlation analysis (computed on a worker thread) is current. */
async function runView(path: string): Promise<any> {
  for (let i = 0; i < 600; i++) {
    const r = await api(path);
    if (r.analysis?.current) return r;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  throw new Error(`${path}: the analysis never arrived`);
}

test('the run view: leaderboard, baselines, Pareto front, correlations', async () => {
  const r = await runView('/api/run?db=0&run=1');
  assert.deepEqual(r.leaderboard.map((b: any) => b.id), [7, 4, 2, 3, 1]);
  assert.deepEqual(r.leaderboard.map((b: any) => b.fullPpl), [138, 139, 140, null, 150]);
  assert.equal(r.leaderboard[1].equivalents, 1, 'individual 5 shares the masks of 4');
  assert.match(r.leaderboard[2].latex, /\\sqrt\{X\}/);
  assert.deepEqual(r.baselines.map((b: any) => b.method), ['dense', 'wanda', 'magnitude', XSS_BASELINE]);
  assert.deepEqual(r.curve.map((c: any) => c.best), [140, 139, 138]);
  // The front against brute force: a point is on it when no tree of smaller or equal size has a lower fitness.
  const pts = r.pareto.points as { id: number; size: number; fitness: number }[];
  const dominated = (p: (typeof pts)[0]) => pts.some((q) => q.size <= p.size && q.fitness < p.fitness);
  const brute = pts.filter((p) => !dominated(p)).filter((p, i, a) => a.findIndex((q) => q.size === p.size && q.fitness === p.fitness) === i);
  assert.deepEqual(r.pareto.front.map((p: any) => p.id), brute.map((p) => p.id));
  assert.deepEqual(r.pareto.front.map((p: any) => [p.size, p.fitness]), [[1, 150], [3, 146], [4, 140], [5, 138]]);
  assert.equal(r.fidelity.length, 4);
  // The analysis thread computes what `report` does.
  const report = buildReport(openDatabase(fixture, { readonly: true }), fixture, { run: 1 });
  assert.deepEqual(r.analysis.principles, report.principles);
  assert.deepEqual(
    r.analysis.correlations.features.map((f: any) => [f.feature, f.spearman.r, f.kendall.r]),
    report.correlations.features.map((f) => [f.feature, Number.isFinite(f.spearman.r) ? f.spearman.r : null, Number.isFinite(f.kendall.r) ? f.kendall.r : null]),
  );
  assert.deepEqual(r.failures.evaluations.map((e: any) => e.individual), [8]);
  assert.deepEqual(r.workerLoad.map((w: any) => w.worker), [0, 1]);
});

test('the run view: the job queue\'s workers as the coordinator recorded them', async () => {
  const r = await api('/api/run?db=0&run=1');
  // Ordered by name: '<' sorts before 'g'.
  assert.deepEqual(
    r.workers.map((w: any) => [w.worker, w.host, w.pid, w.device, w.threads, w.state, w.jobsDone, w.jobsFailed, w.evaluations, w.seconds, w.firstSeen, w.lastSeen, w.perMinute]),
    [
      [WORKERS.hostile, XSS_HOST, 4242, 'cpu', 2, 'busy', 3, 0, 3, 6, WORKERS.from, WORKERS.to, 3],
      [WORKERS.gpu2, 'gpu2', 77, null, null, 'gone', 0, 1, 0, 1, WORKERS.from, '2026-01-01T00:00:15.000Z', 0],
    ],
  );
  // A local run (or a log older than the workers table) has none, and its summary says so.
  const local = join(dir, 'local.sqlite');
  const db = openDatabase(local);
  RunStore.create(db, { config: {}, seed: 1, modelPath: 'm.onnx', modelSha256: 'ab', dataHashes: {}, versions: {} });
  db.close();
  const sources2 = openSources([local]);
  try {
    assert.equal(runSummaries(sources2[0]!.db)[0]!.workers, null);
    assert.deepEqual(queueWorkers(sources2[0]!.db, 1), []);
  } finally {
    closeSources(sources2);
  }
});

test('a candidate: lineage, evaluations with worker and timings, shared masks', async () => {
  const c = await api('/api/candidate?db=0&run=1&id=4');
  assert.deepEqual(c.individual.parents, [2, 3]);
  assert.deepEqual(c.parents.map((p: any) => p.id), [2, 3]);
  assert.deepEqual(c.children.map((p: any) => p.id), INDIVIDUALS.filter((i) => i.parents.includes(4)).map((i) => i.id));
  assert.deepEqual(c.evaluations.map((e: any) => [e.setting, e.fidelity, e.ppl, e.worker, e.seconds]), [['0.5:unstructured', 'short', 138.5, 0, 0.5], ['0.5:unstructured', 'full', 139, 0, 2]]);
  assert.deepEqual(c.sameMasks.map((p: any) => p.id), [5]);
  assert.deepEqual(c.sharedBy.map((p: any) => p.id), [5]);
  assert.deepEqual(c.maskDuplicates.map((d: any) => d.hash), ['dup1']);
  assert.equal(c.rank, 2);
  assert.deepEqual(c.individual.tree, { data: 'add', left: { data: 'mul', left: { data: 'W' }, right: { data: 'sqrt', left: { data: 'X' } } }, right: { data: 'mul', left: { data: 'W' }, right: { data: 'G' } } });
  // Ancestry of 8 (parents 4 and 7): 4's parents 2 and 3 are its grandparents; 7's parent 4 is already listed.
  const eight = await api('/api/candidate?db=0&run=1&id=8');
  assert.deepEqual(eight.parents.map((p: any) => p.id), [4, 7]);
  assert.deepEqual(eight.ancestors.map((a: any) => [a.generation, a.id]), [[2, 2], [2, 3]]);
  assert.deepEqual(c.ancestors, [], '2 and 3 are initial trees');
  const reused = await api('/api/candidate?db=0&run=1&id=5');
  assert.equal(reused.evaluations[0].reused_from_individual, 4);
  // Individual 1 has a child (6) but is not the child of 11, 21, ...: the id is matched exactly.
  const one = await api('/api/candidate?db=0&run=1&id=1');
  assert.deepEqual(one.children.map((p: any) => p.id), [6]);
});

test('scatter of a feature; bad parameters are 400, missing things 404', async () => {
  const s = await api('/api/scatter?db=0&run=1&feature=uses_G');
  assert.equal(s.points.length, 6, 'every individual with a short-budget perplexity (5 paid + 1 reused)');
  assert.deepEqual(s.points.find((p: any) => p.id === 3), { id: 3, x: 1, ppl: 145 });
  // The same points as the rows the correlation analysis uses, for every feature.
  const rows = featureRows(openDatabase(fixture, { readonly: true }), 1);
  for (const f of FEATURES) assert.deepEqual((await api(`/api/scatter?db=0&run=1&feature=${f}`)).points, rows.map((r) => ({ id: r.id, x: r.features[f], ppl: r.ppl })), f);
  assert.equal((await raw('/api/scatter?db=0&run=1&feature=n_W);drop')).status, 400);
  assert.equal((await raw('/api/run?db=0&run=x')).status, 400);
  assert.equal((await raw('/api/run?db=5&run=1')).status, 404);
  assert.equal((await raw('/api/run?db=0&run=9')).status, 404);
  assert.equal((await raw('/api/candidate?db=0&run=1&id=99')).status, 404);
  assert.equal((await raw('/api/nothing')).status, 404);
  const cmp = await api('/api/compare?runs=0:1,1:1');
  assert.deepEqual(cmp.map((c: any) => c.label), ['fixture.sqlite', 'live.sqlite']);
  assert.equal((await raw('/api/compare?runs=0:1,oops')).status, 400);
});

test('read-only: no method but GET/HEAD, foreign Host refused, the database file unchanged', async () => {
  const before = sha(fixture);
  assert.equal((await raw('/api/events', { method: 'HEAD' })).status, 200, 'HEAD of the stream answers and ends');
  for (const path of ['/', '/api/overview', '/api/run?db=0&run=1', '/api/candidate?db=0&run=1&id=7', '/api/scatter?db=0&run=1&feature=size', '/api/compare?runs=0:1']) {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) assert.equal((await raw(path, { method })).status, 405, `${method} ${path}`);
    assert.equal((await raw(path)).status, 200, path);
  }
  assert.equal(sha(fixture), before);
  assert.equal((await raw('/api/overview', { host: 'evil.example:80' })).status, 403, 'DNS rebinding: a foreign Host is refused');
  assert.equal((await raw('/api/overview', { host: `localhost:${base.port}` })).status, 200);
});

test('static files: the page and its libraries are served, nothing outside their folders', async () => {
  const page = await raw('/');
  assert.equal(page.status, 200);
  assert.match(page.type, /text\/html/);
  assert.ok(!page.body.includes('fixture'), 'the page holds no database string; data comes as JSON');
  for (const p of ['/static/app.js', '/vendor/chart/chart.umd.min.js', '/vendor/katex/katex.min.js', '/vendor/katex/katex.min.css', '/vendor/katex/fonts/KaTeX_Main-Regular.woff2'])
    assert.equal((await raw(p)).status, 200, p);
  // Each served folder is three levels below the repository, where bin/symprune.mjs is a file of a served type.
  const up = (sep: string) => [1, 2, 3].map(() => `..${sep}`).join('');
  const probes = [
    '/static/../../../bin/symprune.mjs',
    `/static/${up('%2f')}bin/symprune.mjs`,
    `/static/${up('%2F')}bin%2fsymprune.mjs`,
    '/static/%2e%2e/%2e%2e/%2e%2e/bin/symprune.mjs',
    '/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fbin%2fsymprune.mjs',
    `/static/${up('%5c')}bin%5csymprune.mjs`,
    `/static/%2f${encodeURIComponent(process.cwd())}%2fbin%2fsymprune.mjs`,
    `/static/${process.cwd()}/bin/symprune.mjs`,
    `/vendor/katex/${up('%2f')}bin%2fsymprune.mjs`,
    `/vendor/chart/${up('%2f')}bin%2fsymprune.mjs`,
    '/static/app.js%00.js',
    '/static/app.js%2500',
  ];
  for (const p of probes) {
    const r = await raw(p);
    assert.equal(r.status, 404, p);
    assert.ok(!r.body.includes('tsx/esm/api'), p);
  }
  // A symlink inside a served folder that points out of it is not followed.
  const root = join(dir, 'root');
  mkdirSync(root);
  writeFileSync(join(root, 'ok.js'), 'ok');
  writeFileSync(join(dir, 'secret.js'), 'secret');
  symlinkSync(join(dir, 'secret.js'), join(root, 'link.js'));
  const r = staticRoot(root);
  assert.equal(readStatic(r, 'ok.js')?.body.toString(), 'ok');
  assert.equal(readStatic(r, 'link.js'), null);
  assert.equal(readStatic(r, '..%2fsecret.js'), null);
  assert.equal(readStatic(r, '../secret.js'), null);
  assert.equal(readStatic(r, encodeURIComponent(join(dir, 'secret.js'))), null);
});

test('a commit by another connection reaches the event stream and the next answer', async () => {
  const events: string[] = [];
  const res = await new Promise<import('node:http').IncomingMessage>((ok) => get({ host: base.hostname, port: base.port, path: '/api/events', headers: { Host: base.host } }, ok));
  assert.match(String(res.headers['content-type']), /text\/event-stream/);
  res.setEncoding('utf8');
  const changed = new Promise<void>((ok) =>
    res.on('data', (c: string) => {
      events.push(c);
      if (events.join('').includes('event: change\ndata: {"db":1,')) ok();
    }),
  );
  await new Promise<void>((ok) => res.once('data', () => ok())); // the hello
  const before = (await api('/api/run?db=1&run=1')).curve.length;
  const w = openDatabase(live); // a second writer, as a search would be
  const store = RunStore.open(w, 1);
  store.addProgress({ step: 4, evaluations: 12, individuals: 8, best: 137, median: 139, elapsed: 40 });
  w.close();
  await changed;
  res.destroy();
  assert.ok(!events.join('').includes('event: change\ndata: {"db":0,'), 'the untouched database sends no change');
  assert.equal((await api('/api/run?db=1&run=1')).curve.length, before + 1);
});

// ---- bad input: refused before a server starts ----

/** What `symprune dashboard` does with these databases before it listens (the CLI test below runs the real command). */
function refused(paths: string[], re: RegExp): void {
  assert.throws(() => openSources(paths), (e: unknown) => e instanceof InputError && re.test(e.message) && !e.message.includes('\n'));
}

test('bad databases: one clear message each, nothing opened', () => {
  const text = join(dir, 'notes.sqlite');
  writeFileSync(text, 'just some notes, not a database at all'.repeat(10));
  refused([text], /notes\.sqlite: not a symprune database/);
  const other = join(dir, 'other.sqlite');
  const o = new Database(other);
  o.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)');
  o.close();
  refused([other], /other\.sqlite: not a symprune database/);
  const empty = join(dir, 'empty.sqlite');
  writeFileSync(empty, '');
  refused([empty], /empty\.sqlite: not a symprune database \(empty file\)/);
  refused([join(dir, 'missing.sqlite')], /missing\.sqlite: no such database/);
  // A symprune database with its pages scrambled after the header.
  const bytes = readFileSync(fixture);
  for (let i = 100; i < Math.min(bytes.length, 8192); i++) bytes[i] = (i * 131) & 0xff;
  const damaged = join(dir, 'damaged.sqlite');
  writeFileSync(damaged, bytes);
  refused([damaged], /damaged\.sqlite: (not a symprune|damaged)/);
  refused([fixture, text], /notes\.sqlite: not a symprune database/);
  refused([fixture, fixture], /the same file/);
});

test('a port in use is refused with a clear message', async () => {
  const blocker = createServer();
  await new Promise<void>((ok) => blocker.listen(0, '127.0.0.1', ok));
  const port = (blocker.address() as AddressInfo).port;
  try {
    await assert.rejects(startDashboard({ sources, host: '127.0.0.1', port }), (e: unknown) => e instanceof InputError && e.message === `--port ${port}: already in use on 127.0.0.1 (choose another, or 0 for any free port)`);
  } finally {
    blocker.close();
  }
});

function cli(args: string[]) {
  return spawnSync(process.execPath, ['bin/symprune.mjs', 'dashboard', ...args], { encoding: 'utf8', timeout: 60000 });
}

test('the command refuses a bad database among good ones: one line, exit 2, no server', () => {
  const text = join(dir, 'notes2.sqlite');
  writeFileSync(text, 'not a database'.repeat(20));
  const r = cli(['--db', fixture, '--db', text, '--port', '0']);
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stdout, '', 'no server line');
  assert.equal(r.stderr, `symprune: ${text}: not a symprune database (file is not a database)\n`);
});

test('the command serves, prints its address, and stops on SIGINT', async () => {
  const child = spawn(process.execPath, ['bin/symprune.mjs', 'dashboard', '--db', fixture, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = await new Promise<string>((ok, fail) => {
    child.stdout.on('data', (c) => {
      out += c;
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) ok(m[1]!);
    });
    child.on('exit', (code) => fail(new Error(`exited ${code}: ${out}`)));
  });
  const o = (await (await fetch(url + 'api/overview')).json()) as any[];
  assert.equal(o[0].runs[0].best.id, 7);
  const code = await new Promise<number | null>((ok) => {
    child.removeAllListeners('exit');
    child.on('exit', ok);
    child.kill('SIGINT');
  });
  assert.equal(code, 0);
});
