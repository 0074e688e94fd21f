/**
 * Models of any size: a TinyLlama-1.1B-shaped checkpoint with random weights (bfloat16
 * Hugging Face folder, 2.2 GB at 22 blocks, made by scripts/make-scale-model.ts) run
 * through the commands a user runs, each as its own process under /usr/bin/time, at
 * several depths (the first N blocks of the checkpoint):
 *
 *  - eval --max-tokens 4096 --seqlen 256: one forward pass over 16 x 256 tokens
 *    (the baseline the calibration is compared with);
 *  - prune --method wanda --calibration sequential --nsamples 16 --seqlen 256;
 *  - prune --method sparsegpt (same data), its pruning time per block printed next to
 *    Wanda's;
 *  - stats (same data; G and X block by block);
 *  - eval of the pruned float32 ONNX output (over 4 GiB at 22 blocks).
 *
 * Every model command gets --max-memory 1G (stats 2G) so it runs block by block whatever
 * the depth. Printed: wall time and peak RSS per command and depth, the ratio of
 * sequential calibration time to the forward pass, seconds per block, and peak RSS
 * against the checkpoint's size.
 *
 * Environment: SCALE_DIR (default <tmp>/symprune-scale; the checkpoint is made once and
 * kept), SCALE_BLOCKS (default 4,8,16,22), SCALE_SPARSEGPT_BLOCKS and SCALE_STATS_BLOCKS
 * (default: SCALE_BLOCKS), SCALE_COMMANDS (default eval,wanda,sparsegpt,stats: the ones to
 * run; the pruned ONNX is evaluated with wanda), SCALE_THREADS, SCALE_KEEP=1 (keep the
 * deepest model's pruned float32 ONNX in SCALE_DIR/pruned-N).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../src/model/load.ts';
import { depthView, makeScaleModel } from '../scripts/make-scale-model.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'symprune.mjs');
const CAL = ['--nsamples', '16', '--seqlen', '256'];
const BUDGET = ['--max-memory', '1G'];
// G block by block needs about 1.2 GiB at 16 x 256 tokens (one block's activations kept for
// its backward pass); 2 GiB is still below the checkpoint's 2.2 GB and far below the whole
// model's gradient graph.
const STATS_BUDGET = ['--max-memory', '2G'];

interface Measured {
  wall: number;
  rssMB: number;
  code: number;
  json: Record<string, unknown> | null;
  error: string;
}

function list(env: string | undefined, dflt: number[]): number[] {
  return env ? env.split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0) : dflt;
}

/** Run `symprune ...args` under /usr/bin/time: wall seconds, peak RSS, the JSON it printed. */
function measure(args: string[]): Measured {
  const threads = process.env.SCALE_THREADS ? ['--threads', process.env.SCALE_THREADS] : [];
  const r = spawnSync('/usr/bin/time', ['-f', 'SYMPRUNE_TIME %e %M', process.execPath, BIN, ...args, ...threads], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const m = /SYMPRUNE_TIME ([\d.]+) (\d+)/.exec(r.stderr ?? '');
  // prune prints prune.json indented over many lines; eval and stats print one line.
  const text = (r.stdout ?? '').trim();
  const candidates = [text, text.split('\n').filter(Boolean).pop() ?? ''];
  let json: Record<string, unknown> | null = null;
  for (const c of candidates) {
    try {
      json = c.startsWith('{') ? (JSON.parse(c) as Record<string, unknown>) : null;
    } catch {
      json = null;
    }
    if (json) break;
  }
  const error = (r.stderr ?? '').split('\n').find((l) => l.startsWith('symprune:')) ?? '';
  return { wall: m ? Number(m[1]) : NaN, rssMB: m ? Number(m[2]) / 1024 : NaN, code: r.status ?? -1, json, error };
}

function fmt(m: Measured): string {
  return m.code === 0 ? `${m.wall.toFixed(1)} s, ${m.rssMB.toFixed(0)} MB` : `exit ${m.code}: ${m.error || 'failed'}`;
}

function prunedSeconds(m: Measured): { calibration: number; prune: number } | null {
  const s = m.json?.seconds as { calibration?: number; prune?: number } | undefined;
  return s && typeof s.calibration === 'number' ? { calibration: s.calibration, prune: s.prune ?? NaN } : null;
}

export async function run(): Promise<void> {
  const dir = process.env.SCALE_DIR ?? path.join(os.tmpdir(), 'symprune-scale');
  const blocks = list(process.env.SCALE_BLOCKS, [4, 8, 16, 22]);
  const deepest = Math.max(...blocks);
  const commands = new Set((process.env.SCALE_COMMANDS ?? 'eval,wanda,sparsegpt,stats').split(','));
  const sgptBlocks = commands.has('sparsegpt') ? list(process.env.SCALE_SPARSEGPT_BLOCKS, blocks) : [];
  const statsBlocks = commands.has('stats') ? list(process.env.SCALE_STATS_BLOCKS, blocks) : [];
  const ckpt = path.join(dir, 'tinyllama-random');
  const made = path.join(ckpt, 'config.json');
  const have = fs.existsSync(made) ? (JSON.parse(fs.readFileSync(made, 'utf8')) as { num_hidden_layers: number }).num_hidden_layers : 0;
  if (have < deepest) {
    const t = performance.now();
    fs.rmSync(ckpt, { recursive: true, force: true });
    const bytes = await makeScaleModel(ckpt, Math.max(22, deepest));
    console.log(`made ${ckpt}: ${(bytes / 1e9).toFixed(2)} GB bfloat16 in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  }
  const ckptBytes = fs.statSync(path.join(ckpt, 'model.safetensors')).size;
  const perBlockBytes = (ckptBytes - 2 * 32000 * 2048 * 2 - 2048 * 2) / Math.max(22, deepest);
  console.log(`checkpoint ${ckpt}: ${(ckptBytes / 1e9).toFixed(2)} GB (bfloat16), about ${(perBlockBytes / 1e6).toFixed(0)} MB per block`);
  console.log(`machine: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);

  const rows: string[] = [];
  const perBlock: Array<{ n: number; forward: number; calibration: number }> = [];
  const sgptPerBlock: string[] = [];
  for (const n of blocks) {
    const view = path.join(dir, `view-${n}`);
    depthView(ckpt, n, view);
    const sizeN = 2 * 32000 * 2048 * 2 + n * perBlockBytes;
    const out = path.join(dir, `pruned-${n}`);
    fs.rmSync(out, { recursive: true, force: true });
    const ev = commands.has('eval') ? measure(['eval', '--model', view, '--max-tokens', '4096', '--seqlen', '256', ...BUDGET, '--json']) : null;
    if (ev) console.log(`[${n} blocks] eval (forward pass, 4096 tokens): ${fmt(ev)}`);
    const wanda = commands.has('wanda') ? measure(['prune', '--model', view, '--method', 'wanda', '--calibration', 'sequential', ...CAL, ...BUDGET, '--format', 'onnx', '--out', out, '--json']) : null;
    if (wanda) console.log(`[${n} blocks] prune wanda sequential: ${fmt(wanda)}`);
    const fwd = typeof ev?.json?.seconds === 'number' ? (ev.json.seconds as number) : NaN;
    const wandaS = wanda && prunedSeconds(wanda);
    if (ev && wanda) perBlock.push({ n, forward: fwd, calibration: wandaS?.calibration ?? NaN });
    let onnxEval: Measured | null = null;
    if (wanda?.code === 0) {
      const bytes = fs.statSync(path.join(out, 'model.onnx.data')).size;
      onnxEval = measure(['eval', '--model', out, '--max-tokens', '4096', '--seqlen', '256', ...BUDGET, '--json']);
      console.log(`[${n} blocks] eval of the pruned float32 ONNX (${(bytes / 2 ** 30).toFixed(2)} GiB of external data): ${fmt(onnxEval)}, ppl ${onnxEval.json?.ppl ?? '-'}`);
    }
    let sgpt: Measured | null = null;
    if (sgptBlocks.includes(n)) {
      fs.rmSync(out, { recursive: true, force: true });
      sgpt = measure(['prune', '--model', view, '--method', 'sparsegpt', ...CAL, ...BUDGET, '--format', 'onnx', '--out', out, '--json']);
      const s = prunedSeconds(sgpt);
      console.log(`[${n} blocks] prune sparsegpt: ${fmt(sgpt)}${s ? ` (calibration ${s.calibration.toFixed(1)} s, pruning ${s.prune.toFixed(1)} s)` : ''}`);
      const wandaPart = s && wandaS ? `, wanda ${(wandaS.prune / n).toFixed(1)} s (calibration ${(wandaS.calibration / n).toFixed(1)} s), ratio ${(s.prune / wandaS.prune).toFixed(1)}x` : '';
      if (s) sgptPerBlock.push(`  ${n} blocks: sparsegpt ${(s.prune / n).toFixed(1)} s (calibration ${(s.calibration / n).toFixed(1)} s)${wandaPart}`);
    }
    let stats: Measured | null = null;
    if (statsBlocks.includes(n)) {
      stats = measure(['stats', '--model', view, ...CAL, ...STATS_BUDGET, '--out', path.join(dir, `stats-${n}.safetensors`), '--json']);
      console.log(`[${n} blocks] stats (G and X, block by block): ${fmt(stats)}`);
      fs.rmSync(path.join(dir, `stats-${n}.safetensors`), { force: true });
    }
    // SCALE_KEEP=1 keeps the deepest pruned float32 ONNX (over 4 GiB at 22 blocks) to run other commands on.
    if (!(process.env.SCALE_KEEP && n === deepest && !sgpt)) fs.rmSync(out, { recursive: true, force: true });
    rows.push(
      `| ${n} | ${(sizeN / 1e9).toFixed(2)} | ${ev ? fmt(ev) : '-'} | ${wanda ? fmt(wanda) : '-'} | ${wandaS ? (wandaS.calibration / fwd).toFixed(2) : '-'} | ${sgpt ? fmt(sgpt) : '-'} | ${stats ? fmt(stats) : '-'} | ${onnxEval ? fmt(onnxEval) : '-'} |`,
    );
  }
  console.log('\n| blocks | checkpoint GB (bf16) | eval 4096 tokens | prune wanda sequential 16x256 | calibration / forward | prune sparsegpt | stats | eval pruned f32 ONNX |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) console.log(r);
  if (perBlock.length >= 2) {
    const [a, b] = [perBlock[0]!, perBlock[perBlock.length - 1]!];
    const slope = (x: 'forward' | 'calibration') => (b[x] - a[x]) / (b.n - a.n);
    console.log(`\nseconds per added block: forward ${slope('forward').toFixed(1)}, sequential calibration ${slope('calibration').toFixed(1)} (from ${a.n} to ${b.n} blocks)`);
    for (const p of perBlock) console.log(`  ${p.n} blocks: forward ${p.forward.toFixed(1)} s (${(p.forward / p.n).toFixed(1)} s/block), calibration ${p.calibration.toFixed(1)} s (${(p.calibration / p.n).toFixed(1)} s/block), ratio ${(p.calibration / p.forward).toFixed(2)}`);
  }
  if (sgptPerBlock.length) console.log(`\npruning seconds per block (scores and masks, or SparseGPT's factorisation and reconstruction; calibration apart; load average now ${os.loadavg()[0]!.toFixed(1)}):\n${sgptPerBlock.join('\n')}`);
}
