/**
 * GP settings. Defaults follow Pruner-Zero's published search: steady state, population 50,
 * parents from the top 10 of a random sample, crossover and mutation each with probability
 * 0.5, one child per iteration, initial depth 3-5.
 */
import { InputError } from '../errors.ts';
import { ALLOCATION_TERMINALS, BINARY_OPS, TERMINALS, UNARY_OPS, isAllocationTerminal, isBinary, isTerminal, isUnary, type BinaryOp, type Terminal, type UnaryOp } from '../search-space/index.ts';

export interface GpConfig {
  /** Seed of the run's random generator. */
  seed: string;
  /** What the trees are: per-weight pruning metrics, or layer-wise allocations over per-block statistics. */
  language: 'metric' | 'allocation';
  /** 'steady-state' (Pruner-Zero) or 'generational' (tournament + elitism). */
  mode: 'steady-state' | 'generational';
  populationSize: number;
  /** Ramped half-and-half depths [min, max] of the initial population. */
  initDepth: [number, number];
  /** Limits against bloat, checked after OOS: a longer or larger child is regenerated. */
  maxDepth: number;
  maxSize: number;
  /** Steady state: size of the random sample parents are chosen from... */
  sampleSize: number;
  /** ...and how many of its best are eligible as parents. */
  topK: number;
  crossoverProb: number;
  mutationProb: number;
  /** Share of mutations that are point mutations (the rest are subtree mutations). */
  pointMutationShare: number;
  /** Depth limit of the subtree grown by subtree mutation. */
  mutationDepth: number;
  /**
   * New individuals evaluated per step (one evaluator call). 1 is Pruner-Zero's scheme;
   * set it to the number of workers to evaluate children in parallel.
   */
  batchSize: number;
  /** Attempts per child before giving up on a new metric (see GpEngine). */
  maxRetries: number;
  /** Generational: tournament size and number of elites copied unchanged. */
  tournamentSize: number;
  elitism: number;
  /** Put KNOWN_METRICS (magnitude, Wanda, GBLM, Pruner-Zero's best) in the initial population. */
  seedKnown: boolean;
  /** More seed metrics (infix or JSON text), placed after the known ones. */
  seeds: string[];
  terminals: Terminal[];
  unaryOps: UnaryOp[];
  binaryOps: BinaryOp[];
}

const DEFAULTS: GpConfig = {
  seed: '0',
  language: 'metric',
  mode: 'steady-state',
  populationSize: 50,
  initDepth: [3, 5],
  maxDepth: 8,
  maxSize: 32,
  sampleSize: 20,
  topK: 10,
  crossoverProb: 0.5,
  mutationProb: 0.5,
  pointMutationShare: 0.5,
  mutationDepth: 3,
  batchSize: 1,
  maxRetries: 50,
  tournamentSize: 3,
  elitism: 2,
  seedKnown: false,
  seeds: [],
  terminals: [...TERMINALS],
  unaryOps: [...UNARY_OPS],
  binaryOps: [...BINARY_OPS],
};
export const DEFAULT_GP_CONFIG: Readonly<GpConfig> = Object.freeze(DEFAULTS);

/** Defaults filled in and every field checked; bad values are an InputError naming the field. */
export function resolveConfig(partial: Partial<GpConfig> = {}): GpConfig {
  const c: GpConfig = {
    ...DEFAULT_GP_CONFIG,
    ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)),
  } as GpConfig;
  c.seed = String(c.seed);
  if (c.language !== 'metric' && c.language !== 'allocation') throw new InputError(`gp config: language must be 'metric' or 'allocation', got '${c.language}'`);
  if (c.language === 'allocation' && partial.terminals === undefined) c.terminals = [...ALLOCATION_TERMINALS];
  c.initDepth = [...c.initDepth] as [number, number];
  c.seeds = [...c.seeds];
  c.terminals = [...c.terminals];
  c.unaryOps = [...c.unaryOps];
  c.binaryOps = [...c.binaryOps];
  const int = (name: keyof GpConfig, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new InputError(`gp config: ${name} must be an integer >= ${min}, got ${v}`);
  };
  const prob = (name: keyof GpConfig, v: number) => {
    if (!(v >= 0 && v <= 1)) throw new InputError(`gp config: ${name} must be a probability in [0, 1], got ${v}`);
  };
  if (c.mode !== 'steady-state' && c.mode !== 'generational') {
    throw new InputError(`gp config: mode must be 'steady-state' or 'generational', got '${c.mode}'`);
  }
  int('populationSize', c.populationSize, 2);
  if (c.initDepth.length !== 2) throw new InputError('gp config: initDepth must be [min, max]');
  int('initDepth', c.initDepth[0], 1);
  int('initDepth', c.initDepth[1], c.initDepth[0]);
  int('maxDepth', c.maxDepth, c.initDepth[1]);
  int('maxSize', c.maxSize, 1);
  int('sampleSize', c.sampleSize, 1);
  int('topK', c.topK, 1);
  prob('crossoverProb', c.crossoverProb);
  prob('mutationProb', c.mutationProb);
  prob('pointMutationShare', c.pointMutationShare);
  if (c.crossoverProb === 0 && c.mutationProb === 0) {
    throw new InputError('gp config: crossoverProb and mutationProb cannot both be 0');
  }
  int('mutationDepth', c.mutationDepth, 0);
  int('batchSize', c.batchSize, 1);
  int('maxRetries', c.maxRetries, 1);
  int('tournamentSize', c.tournamentSize, 1);
  int('elitism', c.elitism, 0);
  if (c.mode === 'generational' && c.elitism >= c.populationSize) {
    throw new InputError(`gp config: elitism (${c.elitism}) must be smaller than populationSize (${c.populationSize})`);
  }
  if (c.language === 'allocation') {
    if (c.terminals.length === 0 || !c.terminals.every(isAllocationTerminal)) {
      throw new InputError(`gp config: allocation terminals must be a non-empty subset of ${ALLOCATION_TERMINALS.join(', ')}, got ${c.terminals.join(',')}`);
    }
  } else if (c.terminals.length === 0 || !c.terminals.every((t) => isTerminal(t) && !isAllocationTerminal(t))) {
    throw new InputError(`gp config: terminals must be a non-empty subset of W, G, X, got ${c.terminals.join(',')}`);
  } else if (!c.terminals.includes('W') && !c.terminals.includes('G')) {
    throw new InputError('gp config: terminals must include W or G (a metric over X alone cannot rank weights in a row)');
  }
  const badU = c.unaryOps.find((o) => !isUnary(o));
  if (badU !== undefined) throw new InputError(`gp config: '${badU}' is not a unary operator`);
  const badB = c.binaryOps.find((o) => !isBinary(o));
  if (badB !== undefined) throw new InputError(`gp config: '${badB}' is not a binary operator`);
  if (c.unaryOps.length + c.binaryOps.length === 0) throw new InputError('gp config: no operators enabled');
  return c;
}
