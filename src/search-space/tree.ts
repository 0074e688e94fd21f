/**
 * Expression trees over the terminals W, G, X and Pruner-Zero's 15 operators; the same
 * trees over per-block terminals R, A, M, D express a layer-wise allocation
 * (allocation-expr.ts).
 * Trees are immutable plain objects, so they serialise to JSON as they are
 * (`{"op": "mul", "args": [{"op": "W", "args": []}, ...]}`) and can be shared
 * between individuals without copying.
 */

export type MetricTerminal = 'W' | 'G' | 'X';
/** Per-block statistics of a layer-wise allocation (allocation-expr.ts); never terminals of a metric. */
export type AllocationTerminal = 'R' | 'A' | 'M' | 'D';
export type Terminal = MetricTerminal | AllocationTerminal;
export type UnaryOp = 'sqr' | 'neg' | 'abs' | 'log' | 'exp' | 'sqrt' | 'tanh' | 'pow' | 'skp' | 'mms' | 'zsn';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';
export type Op = Terminal | UnaryOp | BinaryOp;

export interface Tree {
  readonly op: Op;
  readonly args: readonly Tree[];
}

/** The metric terminals. */
export const TERMINALS: readonly MetricTerminal[] = ['W', 'G', 'X'];
export const ALLOCATION_TERMINALS: readonly AllocationTerminal[] = ['R', 'A', 'M', 'D'];
/** Pruner-Zero's order (lib/gptree.py UNARY_FUNCTIONS / BINARY_FUNCTIONS). */
export const UNARY_OPS: readonly UnaryOp[] = ['sqr', 'neg', 'abs', 'log', 'exp', 'sqrt', 'tanh', 'pow', 'skp', 'mms', 'zsn'];
export const BINARY_OPS: readonly BinaryOp[] = ['add', 'sub', 'mul', 'div'];

const TERMINAL_SET = new Set<string>([...TERMINALS, ...ALLOCATION_TERMINALS]);
const ALLOCATION_SET = new Set<string>(ALLOCATION_TERMINALS);
const UNARY_SET = new Set<string>(UNARY_OPS);
const BINARY_SET = new Set<string>(BINARY_OPS);

export function isTerminal(op: string): op is Terminal {
  return TERMINAL_SET.has(op);
}
export function isAllocationTerminal(op: string): op is AllocationTerminal {
  return ALLOCATION_SET.has(op);
}
export function isUnary(op: string): op is UnaryOp {
  return UNARY_SET.has(op);
}
export function isBinary(op: string): op is BinaryOp {
  return BINARY_SET.has(op);
}
export function isOp(op: string): op is Op {
  return TERMINAL_SET.has(op) || UNARY_SET.has(op) || BINARY_SET.has(op);
}

/** Number of arguments an operator takes (0 for terminals). */
export function arity(op: Op): 0 | 1 | 2 {
  return isTerminal(op) ? 0 : isUnary(op) ? 1 : 2;
}

/** Whole-tensor operators: their value at one weight depends on every weight. */
export function isReduction(op: Op): boolean {
  return op === 'mms' || op === 'zsn' || op === 'div';
}

const TERMINAL_NODES: Record<Terminal, Tree> = {
  W: Object.freeze({ op: 'W', args: Object.freeze([]) }) as Tree,
  G: Object.freeze({ op: 'G', args: Object.freeze([]) }) as Tree,
  X: Object.freeze({ op: 'X', args: Object.freeze([]) }) as Tree,
  R: Object.freeze({ op: 'R', args: Object.freeze([]) }) as Tree,
  A: Object.freeze({ op: 'A', args: Object.freeze([]) }) as Tree,
  M: Object.freeze({ op: 'M', args: Object.freeze([]) }) as Tree,
  D: Object.freeze({ op: 'D', args: Object.freeze([]) }) as Tree,
};

/** Build a node; checks arity so a malformed tree cannot be constructed by accident. */
export function node(op: Op, ...args: Tree[]): Tree {
  if (isTerminal(op)) {
    if (args.length !== 0) throw new Error(`terminal ${op} takes no arguments`);
    return TERMINAL_NODES[op];
  }
  const n = arity(op);
  if (args.length !== n) throw new Error(`operator ${op} takes ${n} argument(s), got ${args.length}`);
  return { op, args };
}

export const W = TERMINAL_NODES.W;
export const G = TERMINAL_NODES.G;
export const X = TERMINAL_NODES.X;

/** Number of nodes. */
export function size(t: Tree): number {
  let n = 1;
  for (const a of t.args) n += size(a);
  return n;
}

/** Longest root-to-leaf path in edges (a terminal has depth 0). */
export function depth(t: Tree): number {
  let d = 0;
  for (const a of t.args) d = Math.max(d, 1 + depth(a));
  return d;
}

/** Structural equality (operand order matters). */
export function treeEquals(a: Tree, b: Tree): boolean {
  if (a === b) return true;
  if (a.op !== b.op || a.args.length !== b.args.length) return false;
  for (let i = 0; i < a.args.length; i++) if (!treeEquals(a.args[i]!, b.args[i]!)) return false;
  return true;
}

/** Terminals used anywhere in the tree. */
export function terminalsOf(t: Tree, into: Set<Terminal> = new Set()): Set<Terminal> {
  if (isTerminal(t.op)) into.add(t.op);
  for (const a of t.args) terminalsOf(a, into);
  return into;
}

/** Operators used anywhere in the tree. */
export function opsOf(t: Tree, into: Set<Op> = new Set()): Set<Op> {
  if (!isTerminal(t.op)) into.add(t.op);
  for (const a of t.args) opsOf(a, into);
  return into;
}

/** Path from the root: the child index taken at each level. */
export type Path = readonly number[];

/** Every node in pre-order with its path; the root has the empty path. */
export function nodesWithPaths(t: Tree): { path: Path; node: Tree; depth: number }[] {
  const out: { path: Path; node: Tree; depth: number }[] = [];
  const walk = (n: Tree, path: number[]) => {
    out.push({ path: path.slice(), node: n, depth: path.length });
    n.args.forEach((a, i) => {
      path.push(i);
      walk(a, path);
      path.pop();
    });
  };
  walk(t, []);
  return out;
}

export function subtreeAt(t: Tree, path: Path): Tree {
  let n = t;
  for (const i of path) {
    const next = n.args[i];
    if (!next) throw new Error(`path ${path.join('.')} leaves the tree`);
    n = next;
  }
  return n;
}

/** A copy of `t` with the subtree at `path` replaced (unchanged parts are shared). */
export function replaceAt(t: Tree, path: Path, sub: Tree, from = 0): Tree {
  if (from === path.length) return sub;
  const i = path[from]!;
  const args = t.args.slice();
  if (i >= args.length) throw new Error(`path ${path.join('.')} leaves the tree`);
  args[i] = replaceAt(args[i]!, path, sub, from + 1);
  return { op: t.op, args };
}

/**
 * Shape of a subtree's value: 'full' is [out, in] (uses W or G); 'row' is [in] (uses only X),
 * a row vector that broadcasts over output rows as in PyTorch.
 */
export type Shape = 'row' | 'full';

export function shapeOf(t: Tree): Shape {
  if (t.op === 'X' || isAllocationTerminal(t.op)) return 'row';
  if (t.op === 'W' || t.op === 'G') return 'full';
  for (const a of t.args) if (shapeOf(a) === 'full') return 'full';
  return 'row';
}

/**
 * What is known about the sign of a subtree's finite values: 'nonneg' (>= 0), 'nonpos'
 * (<= 0) or 'any'. Terminals are non-negative by construction (|weight|, a norm, a mean
 * of squares; a share, means of those and a depth for the per-block ones). Used by OOS (abs of a non-negative subtree) and root canonicalisation.
 */
export type Sign = 'nonneg' | 'nonpos' | 'any';

export function signOf(t: Tree): Sign {
  switch (t.op) {
    case 'W':
    case 'G':
    case 'X':
    case 'R':
    case 'A':
    case 'M':
    case 'D':
    case 'sqr':
    case 'pow':
    case 'abs':
    case 'sqrt':
    case 'exp':
    case 'mms':
      return 'nonneg';
    case 'log':
    case 'zsn':
      return 'any';
    case 'neg':
      return flip(signOf(t.args[0]!));
    case 'skp':
    case 'tanh':
      return signOf(t.args[0]!);
    case 'div':
      return signOf(t.args[0]!);
    case 'add': {
      const a = signOf(t.args[0]!);
      const b = signOf(t.args[1]!);
      return a === b ? a : 'any';
    }
    case 'sub': {
      const a = signOf(t.args[0]!);
      const b = flip(signOf(t.args[1]!));
      return a === b ? a : 'any';
    }
    case 'mul': {
      const a = signOf(t.args[0]!);
      const b = signOf(t.args[1]!);
      if (a === 'any' || b === 'any') return 'any';
      return a === b ? 'nonneg' : 'nonpos';
    }
  }
}

function flip(s: Sign): Sign {
  return s === 'nonneg' ? 'nonpos' : s === 'nonpos' ? 'nonneg' : 'any';
}
