/** Reading a search's SQLite log back, to compare runs and check its invariants in tests. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { SEARCH_DEFAULTS } from '../../src/search/settings.ts';

export type Row = Record<string, unknown>;
export function dump(db: string) {
  const d = new Database(db, { readonly: true });
  try {
    return {
      runs: d.prepare('SELECT id, status FROM runs').all() as Row[],
      individuals: d.prepare('SELECT id, infix, hash, origin, parents, step, fingerprint, invalid, fitness, fidelity, shared_with FROM individuals ORDER BY id').all() as Row[],
      evaluations: d.prepare('SELECT id, individual, fidelity, tokens, ppl, status, reused_from FROM evaluations ORDER BY id').all() as Row[],
      progress: d.prepare('SELECT step, best, median FROM progress ORDER BY step').all() as Row[],
      checkpoints: d.prepare('SELECT step FROM checkpoints').all() as Row[],
      baselines: d.prepare('SELECT method, ppl FROM baselines ORDER BY method').all() as Row[],
    };
  } finally {
    d.close();
  }
}

/** The log is consistent: contiguous ids, no pending rows, each evaluated individual has its evaluations. */
export function assertConsistent(x: ReturnType<typeof dump>): void {
  assert.deepEqual(x.runs.map((r) => r.status), ['finished']);
  x.individuals.forEach((r, i) => assert.equal(r.id, i + 1, 'individual ids are 1..N'));
  for (const r of x.individuals) {
    assert.notEqual(r.origin, 'pending', `individual ${r.id} left pending`);
    assert.notEqual(r.fitness, null, `individual ${r.id} has no fitness`);
    const evs = x.evaluations.filter((e) => e.individual === r.id);
    if (r.invalid === null) assert.ok(evs.some((e) => e.fidelity === 'short'), `individual ${r.id} has no short evaluation`);
    if (r.fidelity === 'full') assert.equal(r.fitness, evs.find((e) => e.fidelity === 'full')!.ppl);
  }
  // The two-fidelity rule: full budget exactly when the short perplexity is within the margin of the
  // best short perplexity of the steps before; short-only fitness never beats the best full one.
  const shortOf = new Map(x.evaluations.filter((e) => e.fidelity === 'short' && e.status === 'ok').map((e) => [e.individual, e.ppl as number]));
  for (const r of x.individuals) {
    const s = shortOf.get(r.id);
    if (s === undefined) continue;
    const best = Math.min(...x.individuals.filter((o) => (o.step as number) < (r.step as number) && shortOf.has(o.id)).map((o) => shortOf.get(o.id)!));
    const hasFull = x.evaluations.some((e) => e.individual === r.id && e.fidelity === 'full');
    assert.equal(hasFull, s <= best * (1 + SEARCH_DEFAULTS.margin), `individual ${r.id}: short ${s}, best short so far ${best}, full run: ${hasFull}`);
    if (r.fidelity === 'short') {
      const bestFull = Math.min(...x.individuals.filter((o) => (o.step as number) <= (r.step as number) && o.fidelity === 'full').map((o) => o.fitness as number));
      assert.ok((r.fitness as number) > bestFull, `short-only ${r.id} (${r.fitness}) beats the best full-budget fitness ${bestFull}`);
    }
  }
  const keys = x.evaluations.map((e) => `${e.individual}/${e.fidelity}`);
  assert.equal(new Set(keys).size, keys.length, 'one evaluation per individual and fidelity');
  x.progress.forEach((p, i) => assert.equal(p.step, i + 1, 'a progress row per step'));
  assert.deepEqual(x.checkpoints.map((c) => c.step), [x.progress.length]);
}


/** The same search: same individuals, masks, fitness, evaluations (ids aside), progress and baselines. */
export function sameSearch(a: ReturnType<typeof dump>, b: ReturnType<typeof dump>): void {
  const strip = (rows: Row[]) => rows.map(({ id, infix, hash, origin, parents, fingerprint, invalid, fitness, fidelity, shared_with }) => ({ id, infix, hash, origin, parents, fingerprint, invalid, fitness, fidelity, shared_with }));
  assert.deepEqual(strip(a.individuals), strip(b.individuals));
  const evals = (rows: Row[]) => rows.map(({ individual, fidelity, tokens, ppl, status }) => ({ individual, fidelity, tokens, ppl, status })).sort((x, y) => (x.individual as number) - (y.individual as number) || String(x.fidelity).localeCompare(String(y.fidelity)));
  assert.deepEqual(evals(a.evaluations), evals(b.evaluations));
  assert.deepEqual(a.progress, b.progress);
  assert.deepEqual(a.baselines, b.baselines);
}

/**
 * Run `symprune ARGS` and SIGKILL it once `db` holds `n` evaluations, polling the database's
 * state (never the clock). The log at the kill, or null when the run ended first.
 */
export async function searchKilledAt(args: string[], db: string, n: number): Promise<ReturnType<typeof dump> | null> {
  const child = spawn(process.execPath, ['bin/symprune.mjs', ...args], { stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  let ended = false;
  void exited.then(() => (ended = true));
  try {
    while (!ended) {
      await new Promise((r) => setTimeout(r, 25));
      if (!existsSync(db)) continue;
      try {
        const d = new Database(db, { readonly: true });
        const count = d.prepare('SELECT COUNT(*) FROM evaluations').pluck().get() as number;
        d.close();
        if (count >= n) {
          child.kill('SIGKILL');
          await exited;
          return dump(db);
        }
      } catch {
        // schema not there yet
      }
    }
    return null;
  } finally {
    if (!ended) child.kill('SIGKILL');
  }
}
