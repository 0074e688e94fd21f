/**
 * Runtime validity of a metric: scores that are NaN/inf, or constant within every row, make
 * a metric useless (the mask would follow column order), and the GP gives such trees +inf
 * without spending an evaluation. The check runs the metric on a small probe layer, by
 * default synthetic data with LLaMA-like magnitudes; a search should pass a slice of a real
 * layer so the verdict matches the model it prunes.
 */
import { interpret } from './interpret.ts';
import { randomTerminalData, type TerminalData } from './terminal-data.ts';
import { terminalsOf, type Tree } from './tree.ts';
import { validateTree } from './validate.ts';

let defaultProbe: TerminalData | null = null;

/** 16 x 128 synthetic layer with LLaMA-like magnitudes (fixed seed). */
export function defaultProbeData(): TerminalData {
  defaultProbe ??= randomTerminalData('symprune-probe', 16, 128, { profile: 'llm' });
  return defaultProbe;
}

/** Why these scores cannot rank weights on probe data, or null. */
export function checkScores(scores: Float32Array, rows: number, cols: number): string | null {
  const p = scoresProblem(scores, rows, cols);
  if (!p) return null;
  return p.kind === 'non-finite' ? `non-finite scores on probe data (${p.nan} NaN, ${p.inf} inf of ${scores.length})` : 'constant: scores do not vary within any row on probe data';
}

export type ScoresProblem = { kind: 'non-finite'; nan: number; inf: number } | { kind: 'constant' };

/** NaN/inf scores, or scores constant within every row: what makes a metric unusable (the search's test, also applied to real layers by prune). */
export function scoresProblem(scores: Float32Array, rows: number, cols: number): ScoresProblem | null {
  let nan = 0;
  let inf = 0;
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i]!;
    if (v !== v) nan++;
    else if (v === Infinity || v === -Infinity) inf++;
  }
  if (nan || inf) return { kind: 'non-finite', nan, inf };
  if (cols > 1) {
    let varying = false;
    for (let r = 0; r < rows && !varying; r++) {
      const first = scores[r * cols]!;
      for (let j = 1; j < cols; j++) {
        if (scores[r * cols + j] !== first) {
          varying = true;
          break;
        }
      }
    }
    if (!varying) return { kind: 'constant' };
  }
  return null;
}

/** Structural validity, then the runtime check on `data` (default probe when omitted). */
export function probeTree(tree: Tree, data: TerminalData = defaultProbeData()): string | null {
  const reason = validateTree(tree);
  if (reason) return reason;
  if (data.G === null && terminalsOf(tree).has('G')) return 'uses G but the probe data has no gradients';
  return checkScores(interpret(tree, data), data.rows, data.cols);
}
