/**
 * The dashboard's analysis thread: answers {id, path, run} with the correlation analysis of
 * `report` for that run, read in one transaction from its own read-only connection.
 */
import { parentPort } from 'node:worker_threads';
import { openDatabase, type DB } from '../store/schema.ts';
import { buildReport } from '../store/report.ts';

const dbs = new Map<string, DB>();

parentPort!.on('message', (m: { id: number; path: string; run: number }) => {
  try {
    let db = dbs.get(m.path);
    if (!db) dbs.set(m.path, (db = openDatabase(m.path, { readonly: true })));
    const r = db.transaction(() => buildReport(db!, m.path, { run: m.run, top: 1 }))();
    parentPort!.postMessage({ id: m.id, ok: true, value: { correlations: r.correlations, principles: r.principles } });
  } catch (e) {
    parentPort!.postMessage({ id: m.id, ok: false, error: (e as Error).message ?? String(e) });
  }
});
