/**
 * Is a process alive, and which process is it: what a lock or a temporary file left by a
 * process needs to tell a live owner from a dead one whose pid came back to another process.
 */
import { readFileSync } from 'node:fs';

/** True when a process with this pid exists on this machine (EPERM: it exists, owned by another user). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When a process started, in clock ticks since boot (field 22 of /proc/PID/stat); null where
 * /proc is missing (not Linux). With the pid it names one process across pid reuse.
 */
export function processStartTicks(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}
