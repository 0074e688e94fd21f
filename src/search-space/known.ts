/**
 * Metrics from the literature, as trees: the baselines a search is seeded with and compared
 * against. Pruner-Zero's published best tree is kept in its published form (with the abs
 * that OOS removes), so it prints exactly as released.
 */
import { InputError } from '../errors.ts';
import { parseMetric } from './parse.ts';
import type { Tree } from './tree.ts';

export interface KnownMetric {
  name: string;
  infix: string;
  tree: Tree;
  description: string;
}

function known(name: string, infix: string, description: string): KnownMetric {
  return Object.freeze({ name, infix, tree: parseMetric(infix), description });
}

export const KNOWN_METRICS = Object.freeze({
  magnitude: known('magnitude', 'W', 'weight magnitude |W| (Han et al. 2015)'),
  wanda: known('wanda', 'mul(W,sqrt(X))', 'Wanda: |W| * ||x_j||_2 (Sun et al. 2023)'),
  gblm: known('gblm', 'add(mul(W,sqrt(X)),mul(W,G))', 'GBLM-Pruner: |W| * ||x_j|| + |W| * G (Das et al. 2023)'),
  'pruner-zero': known('pruner-zero', 'mul(abs(mul(W,W)),mms(G))', "Pruner-Zero's published best tree (Dong et al. 2024)"),
});

export type KnownMetricName = keyof typeof KNOWN_METRICS;

/** A known metric's name, or any metric text parseMetric reads (infix or JSON). */
export function metricFromSpec(spec: string): Tree {
  const k = spec.trim().toLowerCase();
  if (Object.hasOwn(KNOWN_METRICS, k)) return KNOWN_METRICS[k as KnownMetricName].tree;
  try {
    return parseMetric(spec);
  } catch (e) {
    if (e instanceof InputError && /^[A-Za-z][\w-]*$/.test(spec.trim())) {
      throw new InputError(`${e.message} (known metric names: ${Object.keys(KNOWN_METRICS).join(', ')})`);
    }
    throw e;
  }
}
