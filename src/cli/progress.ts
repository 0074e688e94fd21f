/**
 * A one-line progress display for long jobs. It redraws in place on a TTY and stays
 * silent otherwise, so piped output holds only the final machine-readable line.
 */
export interface Progress {
  update(done: number, detail?: string): void;
  done(): void;
}

export function progress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  const start = Date.now();
  const tty = stream.isTTY === true;
  let last = 0;
  return {
    update(done, detail = '') {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const secs = (now - start) / 1000;
      const rate = done / Math.max(secs, 1e-9);
      const left = rate > 0 && total > done ? (total - done) / rate : 0;
      const pct = total > 0 ? ((100 * done) / total).toFixed(0) : '?';
      stream.write(`\r\x1b[K${label} ${done}/${total} (${pct}%) ${rate.toFixed(2)}/s, ${fmtSecs(left)} left ${detail}`);
    },
    done() {
      if (tty) stream.write('\r\x1b[K');
    },
  };
}

export function fmtSecs(s: number): string {
  if (!isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
