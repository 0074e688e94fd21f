/**
 * The search space: metric trees over W, G, X, their exact semantics, parsing and printing,
 * OOS simplification and canonical hashing, compiled kernels and pruning masks.
 * Knows nothing of ONNX or of the GP loop.
 */
export {
  TERMINALS,
  ALLOCATION_TERMINALS,
  isAllocationTerminal,
  UNARY_OPS,
  BINARY_OPS,
  W,
  G,
  X,
  node,
  arity,
  isTerminal,
  isUnary,
  isBinary,
  isOp,
  isReduction,
  size,
  depth,
  treeEquals,
  terminalsOf,
  opsOf,
  nodesWithPaths,
  subtreeAt,
  replaceAt,
  shapeOf,
  signOf,
} from './tree.ts';
export type { Tree, Op, Terminal, MetricTerminal, AllocationTerminal, UnaryOp, BinaryOp, Path, Shape, Sign } from './tree.ts';
export { parseMetric, parseInfix, fromJsonValue, fromPrunerZeroJson, fromTreeJson } from './parse.ts';
export { toInfix, toPrunerZeroJson, toTreeJson, toLatex } from './print.ts';
export type { PrunerZeroNode } from './print.ts';
export { validateTree } from './validate.ts';
export { simplify, rewrite, commutativeKey } from './simplify.ts';
export { canonicalize, canonicalHash, stripRoot, orderOperands } from './canonical.ts';
export { interpret, evaluate } from './interpret.ts';
export type { ShapedValue } from './interpret.ts';
export { compileTree } from './compile.ts';
export type { CompiledKernel } from './compile.ts';
export { unstructuredMask, nmMask } from './mask.ts';
export type { MaskResult } from './mask.ts';
export { KNOWN_METRICS, metricFromSpec } from './known.ts';
export type { KnownMetric, KnownMetricName } from './known.ts';
export { checkTerminalData, randomTerminalData } from './terminal-data.ts';
export type { TerminalData, RandomDataOptions } from './terminal-data.ts';
export { probeTree, checkScores, defaultProbeData } from './probe.ts';
export {
  ALLOCATION_TERMINAL_DOCS,
  validateAllocationTree,
  parseAllocationExpr,
  simplifyAllocation,
  canonicalizeAllocation,
  blockScores,
  KNOWN_ALLOCATIONS,
} from './allocation-expr.ts';
export type { BlockStatistics } from './allocation-expr.ts';
