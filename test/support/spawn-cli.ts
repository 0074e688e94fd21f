/** Run the real `symprune` command in its own process, as a user would, from the repository root. */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'symprune.mjs');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Spawned rather than run in-process so that exit codes and stray output are the real ones. */
export function symprune(...args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `symprune ARGS` to its end, synchronously (spawnSync's result: status, stdout, stderr). */
export function sympruneSync(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env } });
}
