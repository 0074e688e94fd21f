/**
 * The genetic-programming engine: seeded, resumable, batch-evaluating. Fitness arrives
 * through an injected async evaluator, so this module knows nothing of ONNX or perplexity.
 */
export { GpEngine, serializeState, parseState } from './engine.ts';
export type {
  Origin,
  CacheHit,
  Individual,
  IndividualRecord,
  EvalRequest,
  EvalOutcome,
  GpDeps,
  CacheEntry,
  GpCounters,
  GpState,
  StepSummary,
} from './engine.ts';
export { DEFAULT_GP_CONFIG, resolveConfig } from './config.ts';
export type { GpConfig } from './config.ts';
export { createRng } from './rng.ts';
export type { Rng, RngState } from './rng.ts';
export { randomTree, outsidePrimitives, ALL_PRIMITIVES } from './primitives.ts';
export type { PrimitiveSet } from './primitives.ts';
export { crossover, pointMutation, subtreeMutation } from './variation.ts';
