/**
 * The `workers` table of a run that evaluates through the job queue: who answered its jobs,
 * how many, how long, and whether each worker is still there. The coordinator writes it (the
 * only writer of the log) from what the queue tells it; the workers never touch SQLite.
 */
import type { DB } from './schema.ts';

export type WorkerState = 'busy' | 'idle' | 'gone';

/** A worker as its job results name it. */
export interface WorkerIdentity {
  /** Its name on the queue: host:pid. */
  name: string;
  host: string;
  pid: number | null;
  threads?: number | null;
  device?: string | null;
}

/** One job a worker finished for the run. */
export interface WorkerJob {
  ok: boolean;
  /** A perplexity evaluation (not a mask). */
  perplexity: boolean;
  seconds: number;
}

/** An idle worker's last_seen is rewritten at most this often (s): fewer commits for the dashboard to wake on. */
const REFRESH_SECONDS = 30;

export class WorkerLog {
  /** What was last written per worker, so that unchanged states are not written again. */
  private readonly known = new Map<string, { state: WorkerState; written: number }>();

  constructor(
    private readonly db: DB,
    private readonly run: number,
  ) {
    for (const r of db.prepare(`SELECT worker, state, last_seen FROM workers WHERE run = ?`).all(run) as { worker: string; state: WorkerState; last_seen: string }[])
      this.known.set(r.worker, { state: r.state, written: Date.parse(r.last_seen) });
  }

  /** A job the worker answered: its counts, its identity, and it was there at `at`. */
  jobDone(w: WorkerIdentity, job: WorkerJob, at: Date): void {
    const ts = at.toISOString();
    // The state stays what the queue's list last said; a worker first heard of here is idle.
    const state = this.known.get(w.name)?.state ?? 'idle';
    this.db
      .prepare(
        `INSERT INTO workers (run, worker, host, pid, threads, device, first_seen, last_seen, jobs_done, jobs_failed, evaluations, seconds, state)
         VALUES (@run, @worker, @host, @pid, @threads, @device, @ts, @ts, @done, @failed, @evals, @seconds, @state)
         ON CONFLICT (run, worker) DO UPDATE SET
           threads = COALESCE(excluded.threads, threads), device = COALESCE(excluded.device, device),
           last_seen = MAX(last_seen, excluded.last_seen),
           jobs_done = jobs_done + excluded.jobs_done, jobs_failed = jobs_failed + excluded.jobs_failed,
           evaluations = evaluations + excluded.evaluations, seconds = seconds + excluded.seconds`,
      )
      .run({
        run: this.run,
        worker: w.name,
        host: w.host,
        pid: w.pid,
        threads: w.threads ?? null,
        device: w.device ?? null,
        ts,
        done: job.ok ? 1 : 0,
        failed: job.ok ? 0 : 1,
        evals: job.ok && job.perplexity ? 1 : 0,
        seconds: job.seconds,
        state,
      });
    this.known.set(w.name, { state, written: at.getTime() });
  }

  /**
   * The workers connected to the queue at `at`, and the names of those holding a job:
   * new ones are added, the rest marked busy or idle, and every other worker of the run gone.
   * `seen([], [], at)` when the run stops listening.
   */
  seen(connected: readonly WorkerIdentity[], busy: readonly string[], at: Date): void {
    const ts = at.toISOString();
    const now = at.getTime();
    const insert = this.db.prepare(`INSERT INTO workers (run, worker, host, pid, first_seen, last_seen, state) VALUES (?, ?, ?, ?, ?, ?, ?)`);
    const update = this.db.prepare(`UPDATE workers SET state = ?, last_seen = MAX(last_seen, ?) WHERE run = ? AND worker = ?`);
    const gone = this.db.prepare(`UPDATE workers SET state = 'gone' WHERE run = ? AND worker = ?`);
    const here = new Set(connected.map((w) => w.name));
    this.db.transaction(() => {
      for (const { name, host, pid } of connected) {
        const state: WorkerState = busy.includes(name) ? 'busy' : 'idle';
        const k = this.known.get(name);
        if (!k) insert.run(this.run, name, host, pid, ts, ts, state);
        else if (k.state !== state || now - k.written >= REFRESH_SECONDS * 1000) update.run(state, ts, this.run, name);
        else continue;
        this.known.set(name, { state, written: now });
      }
      for (const [name, k] of this.known) {
        if (here.has(name) || k.state === 'gone') continue;
        gone.run(this.run, name);
        this.known.set(name, { state: 'gone', written: k.written });
      }
    })();
  }
}
