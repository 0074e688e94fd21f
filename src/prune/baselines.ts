/**
 * The pruning methods symprune compares against, each in its authors' own convention,
 * and the adapter that turns any search-space metric into a method of the same
 * harness. A method either scores weights (lower = pruned) for a mask, or, for
 * SparseGPT, reconstructs the layer from its input Hessian.
 */
import seedrandom from 'seedrandom';
import { InputError } from '../errors.ts';
import { KNOWN_METRICS, compileTree, metricFromSpec, terminalsOf, toInfix, validateTree, type KnownMetricName, type Tree } from '../search-space/index.ts';
import type { StatsNeed } from './layer-stats.ts';
import { riaScores } from './ria.ts';
import { scoreLayer, type Grouping, type LayerArrays, type ScoreScratch } from './score.ts';

export interface ScoreContext {
  /** PyTorch module name of the layer (seeds `random`). */
  name: string;
  scratch: ScoreScratch;
}

export interface PruneMethod {
  /** Registry name, or `metric` for a user metric. */
  name: string;
  /** What prune.json and tables print: the method name or the metric's infix form. */
  label: string;
  needs: StatsNeed;
  /** Comparison group for unstructured sparsity (N:M always uses its groups). */
  grouping: Grouping;
  kind: 'score' | 'sparsegpt';
  /** Scores of one layer (kind 'score'); may return a view into ctx.scratch. */
  score?: (layer: LayerArrays, ctx: ScoreContext) => Float32Array;
  /** The metric tree, when the method is one. */
  tree?: Tree;
}

export const METHOD_NAMES = ['magnitude', 'wanda', 'gblm', 'ria', 'pruner-zero', 'random', 'sparsegpt'] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

function knownTree(name: KnownMetricName): Tree {
  return KNOWN_METRICS[name].tree;
}

/** A method from any metric tree: scores per output row, as Wanda and Pruner-Zero compare them. */
export function metricMethod(tree: Tree, name = 'metric', grouping: Grouping = 'row'): PruneMethod {
  const problem = validateTree(tree);
  if (problem) throw new InputError(`metric: ${problem}`);
  const used = terminalsOf(tree);
  const compiled = compileTree(tree);
  return {
    name,
    label: toInfix(tree),
    needs: { X: used.has('X'), G: used.has('G') },
    grouping,
    kind: 'score',
    tree,
    score: (layer, ctx) => scoreLayer(compiled, layer, ctx.scratch),
  };
}

/** A method from a metric's text (infix, symprune JSON, Pruner-Zero tree JSON, or a known metric's name). */
export function metricMethodFromText(text: string): PruneMethod {
  return metricMethod(metricFromSpec(text));
}

export interface MethodOptions {
  /** Seed of `random` (default 0). */
  seed?: number;
}

/** A baseline by name; throws InputError naming the known methods otherwise. */
export function baselineMethod(name: string, opts: MethodOptions = {}): PruneMethod {
  switch (name as MethodName) {
    case 'magnitude':
      // Magnitude pruning's convention: one threshold over the whole layer.
      return { ...metricMethod(knownTree('magnitude'), 'magnitude', 'layer'), label: 'magnitude' };
    case 'wanda':
    case 'gblm':
    case 'pruner-zero':
      return { ...metricMethod(knownTree(name as KnownMetricName), name), label: name };
    case 'ria':
      return {
        name: 'ria',
        label: 'ria',
        needs: { X: true, G: false },
        grouping: 'layer',
        kind: 'score',
        score: (layer, ctx) => riaScores(layer.weight, layer.rows, layer.cols, layer.X!, 0.5, ctx.scratch.scoreBuffer(layer.rows * layer.cols)),
      };
    case 'random': {
      const seed = opts.seed ?? 0;
      return {
        name: 'random',
        label: 'random',
        needs: { X: false, G: false },
        grouping: 'row',
        kind: 'score',
        score: (layer, ctx) => {
          const rng = seedrandom(`${seed}/${ctx.name}`);
          const s = ctx.scratch.scoreBuffer(layer.rows * layer.cols);
          for (let i = 0; i < s.length; i++) s[i] = rng();
          return s;
        },
      };
    }
    case 'sparsegpt':
      return { name: 'sparsegpt', label: 'sparsegpt', needs: { X: false, G: false }, grouping: 'row', kind: 'sparsegpt' };
    default:
      throw new InputError(`--method ${name}: unknown method; expected one of ${METHOD_NAMES.join(', ')}`);
  }
}
