/**
 * The correlation analysis of each run (`report`'s: Spearman and Kendall against every tree
 * feature, and the principles they support), computed on a worker thread. Kendall's tau is
 * quadratic in the individuals (seconds for a long run), and the server must keep answering
 * meanwhile: it serves the latest finished analysis and starts a newer one when the database
 * has moved on, at most every `throttle` times the last one's cost, so the analysis takes a
 * small share of a machine that is also running the search.
 */
import { Worker } from 'node:worker_threads';
import type { Report } from '../store/report.ts';
import type { Source } from './sources.ts';

export interface Analysis {
  correlations: Report['correlations'];
  principles: string[];
  /** The database version it was started at, and what it cost. */
  version: number;
  ms: number;
}

interface Entry {
  value: Analysis | null;
  error: string | null;
  running: boolean;
  doneAt: number;
}

type Reply = { id: number; ok: true; value: Pick<Analysis, 'correlations' | 'principles'> } | { id: number; ok: false; error: string };

export class Analyses {
  private worker: Worker | null = null;
  private entries = new Map<string, Entry>();
  private waiting = new Map<number, (r: Reply) => void>();
  private seq = 0;

  /** onReady: an analysis of this source finished (the page should fetch it). */
  constructor(
    private readonly onReady: (s: Source) => void,
    private readonly throttle = 10,
  ) {}

  /** The latest finished analysis of a run (null before the first one ends) and the last error. */
  latest(s: Source, run: number): { analysis: Analysis | null; error: string | null } {
    const key = `${s.key} ${run}`;
    let e = this.entries.get(key);
    if (!e) this.entries.set(key, (e = { value: null, error: null, running: false, doneAt: 0 }));
    const stale = !e.value || e.value.version !== s.version;
    if (stale && !e.running && performance.now() - e.doneAt >= this.throttle * (e.value?.ms ?? 0)) this.start(s, run, e);
    return { analysis: e.value, error: e.error };
  }

  private start(s: Source, run: number, e: Entry): void {
    e.running = true;
    const version = s.version;
    const t0 = performance.now();
    const id = ++this.seq;
    this.waiting.set(id, (r) => {
      e.running = false;
      e.doneAt = performance.now();
      if (r.ok) {
        e.value = { ...r.value, version, ms: e.doneAt - t0 };
        e.error = null;
      } else e.error = r.error;
      this.onReady(s);
    });
    this.thread().postMessage({ id, path: s.path, run });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    // From source the thread needs tsx registered (analysis-entry.mjs); compiled, it runs the job as is.
    const compiled = import.meta.url.endsWith('.js');
    const w = new Worker(new URL(compiled ? './analysis-job.js' : './analysis-entry.mjs', import.meta.url));
    w.unref(); // an idle analysis thread does not keep the process alive
    w.on('message', (r: Reply) => {
      const done = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      done?.(r);
    });
    w.on('error', (err) => {
      // The thread died: fail what it held; the next request starts a new one.
      this.worker = null;
      for (const [id, done] of this.waiting) done({ id, ok: false, error: `analysis thread failed: ${err.message}` });
      this.waiting.clear();
    });
    return (this.worker = w);
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = null;
  }
}
