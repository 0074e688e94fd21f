/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core, against the
 * real `symprune dashboard` command over databases made by real `symprune search` runs (a
 * tiny LLaMA built on the fly): the leaderboard checked against SQL, a live search adding a
 * point to the fitness curve without a reload, a candidate's page, sortable tables, runs side
 * by side, a crafted database whose `<script>`s show as text, and a screenshot.
 *
 * SYMPRUNE_DOCS_SCREENSHOTS=1 also writes docs/dashboard.png and docs/dashboard-candidate.png
 * (the README's pictures) from the committed reference run.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chromium, type Page } from 'playwright-core';
import { searchFixture } from './support/search-fixture.ts';
import { openSources, closeSources } from '../src/dashboard/sources.ts';
import { startDashboard } from '../src/dashboard/server.ts';
import { makeFixture, WORKERS, XSS_BASELINE, XSS_ERROR, XSS_HOST, XSS_METRIC, XSS_MODEL } from './dashboard-fixture.ts';

const CHROMIUM = '/usr/bin/chromium';
const REFERENCE = 'runs/reference/search.sqlite';
const dir = mkdtempSync(join(tmpdir(), 'symprune-dash-browser-'));
await searchFixture(dir, { fitTokens: 8192, calibTokens: 4096 }).ready;

const search = (db: string, iterations: number, extra: string[] = []) => [
  'bin/symprune.mjs', 'search', '--model', dir, '--fitness-data', join(dir, 'fit.bin'), '--data', join(dir, 'calib.bin'),
  '--nsamples', '8', '--seqlen', '32', '--seed', '5', '--population', '10', '--eval-tokens', '4096', '--iterations', String(iterations), '--batch', '2', '--db', db, ...extra,
];

const finished = join(dir, 'finished.sqlite');
const live = join(dir, 'live.sqlite');
const crafted = join(dir, 'crafted.sqlite');
const children: ChildProcess[] = [];
// Whatever the test got to start is stopped even when an assertion fails half way: a server's
// timers or a browser left running would keep this file's process alive until CI's time runs out.
const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const clean of cleanups.reverse()) await Promise.resolve().then(clean).catch(() => {});
});

function rows(db: string, sql: string, ...args: unknown[]): Record<string, any>[] {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare(sql).all(...args) as Record<string, any>[];
  } finally {
    d.close();
  }
}

/** Progress rows of the live run, or 0 while its file is still being set up. */
function progressRows(db: string): number {
  if (!existsSync(db)) return 0;
  try {
    return rows(db, 'SELECT COUNT(*) AS n FROM progress')[0]!.n as number;
  } catch {
    return 0;
  }
}

async function until(what: string, cond: () => boolean, ms = 120000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const ppl = (v: number | null, estimated = false) => (v === null ? '–' : v.toFixed(2) + (estimated ? '*' : ''));

/** Go to a view and wait until it has loaded its data. */
async function loaded(page: Page, hash: string): Promise<void> {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.waitForFunction((h) => document.body.dataset.view === h && Number(document.body.dataset.refreshed) >= 1 && !document.querySelector('.error-box'), hash);
}

const t0 = Date.now();
const mark = (what: string) => process.env.SYMPRUNE_TEST_TIMES && console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);

test('the dashboard in Chromium over real search databases', { timeout: 300000 }, async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  // The finished search, the live one (it keeps writing while the dashboard watches; no
  // baselines, so it starts writing steps sooner) and the browser start together.
  const done = new Promise<void>((ok, fail) => {
    const p = spawn(process.execPath, search(finished, 16, ['--baselines', 'magnitude,wanda,ria']), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (c) => (err += c));
    p.on('exit', (code) => (code === 0 ? ok() : fail(new Error(`search exited ${code}: ${err}`))));
  });
  const writer = spawn(process.execPath, search(live, 2000, ['--workers', '1', '--baselines', 'none']), { stdio: 'ignore' });
  children.push(writer);
  const browser = chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'symprune-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanups.push(async () => (await browser).close());
  makeFixture(crafted);
  await done;
  mark('finished search');
  await until('the live search to finish its first step', () => progressRows(live) >= 1);
  mark('live search writing');
  // The server the command runs (test/dashboard.test.ts runs the command itself).
  const sources = openSources([finished, live, crafted, REFERENCE]);
  cleanups.push(() => closeSources(sources));
  const dash = await startDashboard({ sources, host: '127.0.0.1', port: 0 });
  cleanups.push(() => dash.close());
  const url = dash.url;
  const context = await browser;
  mark('browser up');
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(60000);
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  // Offline: everything the page loads (scripts, styles, fonts, data) comes from the dashboard itself.
  page.on('request', (r) => !r.url().startsWith(url) && !r.url().startsWith('data:') && problems.push(`request elsewhere: ${r.url()}`));
  page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()} for ${r.url()}`));
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.refreshed) >= 1);
  await page.waitForSelector('#live.on');

  // The runs: one row per run of every database.
  assert.equal(await page.locator('#runs tbody tr').count(), 4);

  // The leaderboard of the finished run against SQL: distinct masks, best fitness first, baselines beside.
  await loaded(page, '#/run/0/1');
  assert.equal(await page.getByRole('heading', { name: /^Workers/ }).isVisible(), false, 'a run on local threads has no Workers panel');
  const board = await page.$$eval('#leaderboard tbody tr', (trs) =>
    trs.map((tr) => ({ baseline: tr.classList.contains('baseline'), cells: [...tr.querySelectorAll('td')].map((td) => td.querySelector('.infix')?.textContent ?? td.textContent!.trim()) })),
  );
  const expected = rows(
    finished,
    `SELECT i.id, i.infix, i.fitness, (SELECT ppl FROM evaluations e WHERE e.run = i.run AND e.individual = i.id AND e.fidelity = 'full') AS full
     FROM individuals i WHERE i.run = 1 AND i.fitness IS NOT NULL AND i.fitness < 1e308
       AND NOT EXISTS (SELECT 1 FROM individuals j WHERE j.run = i.run AND j.fingerprint = i.fingerprint AND j.id < i.id)
     ORDER BY i.fitness, i.id LIMIT 20`,
  );
  const metrics = board.filter((r) => !r.baseline).map((r) => r.cells);
  assert.deepEqual(
    metrics.map((c) => [c[0], c[1], c[4], c[5]]),
    expected.map((e, i) => [String(i + 1), ppl(e.full ?? e.fitness, e.full === null), `#${e.id}`, e.infix]),
  );
  const bases = rows(finished, `SELECT method, ppl FROM baselines WHERE run = 1 AND ppl IS NOT NULL`);
  assert.deepEqual(
    board.filter((r) => r.baseline).map((r) => [r.cells[5], r.cells[1]]).sort(),
    bases.map((b) => [`${b.method} (baseline)`, ppl(b.ppl)]).sort(),
  );
  assert.ok((await page.locator('#leaderboard .katex').count()) >= metrics.length, 'every metric has a rendered formula');
  // Rows are in perplexity order, baselines among the metrics.
  const shown = board.map((r) => Number(r.cells[1]!.replace('*', '')));
  assert.deepEqual(shown, [...shown].sort((a, b) => a - b));

  // Sortable: by size, then the other way.
  const sizes = async () => (await page.$$eval('#leaderboard tbody tr:not(.baseline) td:nth-child(4)', (tds) => tds.map((t) => Number(t.textContent))));
  await page.click('#leaderboard th:nth-child(4)');
  const up = await sizes();
  assert.deepEqual(up, [...up].sort((a, b) => a - b));
  await page.focus('#leaderboard th:nth-child(4)'); // and from the keyboard
  await page.keyboard.press('Enter');
  const down = await sizes();
  assert.deepEqual(down, [...up].sort((a, b) => b - a));
  await page.click('#leaderboard th:nth-child(2)');

  // A candidate's page, opened from the leaderboard.
  const best = expected[0]!;
  await page.click(`#leaderboard a[href="#/run/0/1/c/${best.id}"]`);
  await page.waitForFunction((h) => document.body.dataset.view === h && Number(document.body.dataset.refreshed) >= 1, `#/run/0/1/c/${best.id}`);
  assert.equal(await page.textContent('h1'), `Individual #${best.id}finished.sqlite · run 1`);
  assert.equal(await page.textContent('#infix'), best.infix);
  const evs = rows(finished, `SELECT fidelity, worker FROM evaluations WHERE run = 1 AND individual = ? ORDER BY id`, best.id);
  const evRows = await page.$$eval('#evaluations tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
  assert.deepEqual(evRows.map((r) => [r[1], r[5]]), evs.map((e) => [e.fidelity, String(e.worker)]));
  const parents = JSON.parse(rows(finished, `SELECT parents FROM individuals WHERE run = 1 AND id = ?`, best.id)[0]!.parents) as number[];
  assert.deepEqual(await page.$$eval('#parents tbody tr td:first-child', (tds) => tds.map((t) => t.textContent)), parents.sort((a, b) => a - b).map((p) => `#${p}`));
  assert.ok((await page.locator('.formula-big .katex').count()) === 1);
  assert.ok((await page.locator('.tree .node').count()) > 0);
  await page.screenshot({ path: join(dir, 'candidate.png'), fullPage: true });

  mark('candidate page');
  // Live: the running search adds a point to the curve while the page stays (no reload).
  await loaded(page, '#/run/1/1');
  await page.evaluate(() => ((window as any).__sameDocument = true));
  const points = () => page.evaluate(() => Number((document.querySelector('.chart.tall') as HTMLElement).dataset.points));
  const before = await points();
  assert.ok(before >= 1);
  await page.waitForFunction((n) => Number((document.querySelector('.chart.tall') as HTMLElement).dataset.points) > n, before, { timeout: 120000 });
  assert.equal(await page.evaluate(() => (window as any).__sameDocument), true, 'the page was not reloaded');
  const chartPoints = await page.evaluate(() => (window as any).Chart.getChart(document.querySelector('.chart.tall canvas')).data.datasets[0].data.length);
  assert.ok(chartPoints > before && chartPoints <= progressRows(live));
  mark('live point');
  writer.kill('SIGINT');

  // Runs side by side.
  await loaded(page, '#/');
  await page.check('input[aria-label="select 0:1"]');
  await page.check('input[aria-label="select 3:1"]');
  await page.click('button:has-text("Compare selected runs")');
  await page.waitForSelector('#compare');
  assert.equal(await page.locator('#compare tr:first-child td').count(), 2);
  assert.equal(await page.evaluate(() => (window as any).Chart.getChart(document.querySelector('.chart.tall canvas')).data.datasets.length), 2);

  // A crafted database: every hostile string is shown as text and runs nothing.
  for (const hash of ['#/', '#/run/2/1', '#/run/2/1/c/7', '#/run/2/1/c/8', '#/compare/2:1,0:1']) {
    await loaded(page, hash);
    const text = await page.evaluate(() => document.body.innerText);
    if (hash === '#/run/2/1' || hash === '#/run/2/1/c/7') assert.ok(text.includes(XSS_METRIC), `${hash}: the metric shows as text`);
    if (hash === '#/run/2/1') assert.ok(text.includes(XSS_BASELINE) && text.includes(XSS_ERROR), `${hash}: baseline and error show as text`);
    if (hash === '#/run/2/1') assert.ok(text.includes(WORKERS.hostile) && text.includes(XSS_HOST), `${hash}: the worker's name and host show as text`);
    if (hash === '#/run/2/1/c/7') assert.ok(text.includes('<script>window.__xss=6</script>'), 'the stored tree shows as text');
    assert.equal(await page.evaluate(() => (window as any).__xss), undefined, `${hash}: no injected script ran`);
    assert.equal(await page.locator('img[src="x"], svg[onload], b[onmouseover], main script').count(), 0, `${hash}: no injected element`);
  }
  assert.equal(await page.locator('script').count(), 3, 'only the page’s own scripts');
  await loaded(page, '#/run/2/1');
  assert.ok((await page.evaluate(() => document.body.innerText)).includes(XSS_MODEL.split('/').slice(-2).join('/')));
  // The Workers panel: busy first, then sortable by a click on a header (again: reversed).
  const workerCells = () => page.evaluate(() => [...document.querySelectorAll('#workers tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => (td as HTMLElement).innerText)));
  assert.deepEqual((await workerCells()).map((r) => [r[0], r[3], r[4]]), [[WORKERS.hostile, 'busy', '3'], [WORKERS.gpu2, 'gone', '0']]);
  await page.click('#workers th:has-text("failed")');
  assert.deepEqual((await workerCells()).map((r) => r[0]), [WORKERS.hostile, WORKERS.gpu2]);
  await page.click('#workers th:has-text("failed")');
  assert.deepEqual((await workerCells()).map((r) => r[0]), [WORKERS.gpu2, WORKERS.hostile]);

  mark('crafted');
  await loaded(page, '#/run/0/1');
  const shot = join(dir, 'run.png');
  await page.screenshot({ path: shot, fullPage: true });
  const png = readFileSync(shot);
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.ok(png.readUInt32BE(16) === 1440 && png.readUInt32BE(20) > 1000, `a full-page screenshot, got ${png.readUInt32BE(16)} x ${png.readUInt32BE(20)}`);

  if (process.env.SYMPRUNE_DOCS_SCREENSHOTS) {
    await page.setViewportSize({ width: 1440, height: 1350 });
    await loaded(page, '#/run/3/1');
    await page.waitForSelector('#correlations'); // the analysis thread's answer
    await page.waitForTimeout(300); // fonts
    await page.screenshot({ path: 'docs/dashboard.png' });
    const top = rows(REFERENCE, `SELECT id FROM individuals WHERE run = 1 AND fitness < 1e308 ORDER BY fitness, id LIMIT 1`)[0]!.id;
    await page.setViewportSize({ width: 1440, height: 1000 });
    await loaded(page, `#/run/3/1/c/${top}`);
    await page.screenshot({ path: 'docs/dashboard-candidate.png', fullPage: true });
  }
  assert.deepEqual(problems, []);
});
