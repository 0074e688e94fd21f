/**
 * Compile a metric into straight-line JavaScript over Float32Arrays (via `new Function`), so
 * scoring a layer of millions of weights costs a few streaming loops instead of one tree walk
 * and one array per node.
 *
 * Plan of a kernel:
 * - Row-shaped subtrees (reading only X) are evaluated once per call over [cols] by the
 *   reference interpreter (negligible work) and read by column index in the loops; X itself
 *   is read as X[j].
 * - Every whole-tensor reduction over a full-shaped value (mms, zsn, div by the norm of a
 *   full-shaped y) gets statistics passes: a loop that recomputes the reduced subtree
 *   elementwise and accumulates min/max, a sum, or a sum of squares. zsn needs two (mean,
 *   then squared deviations). Reductions whose inputs are ready are accumulated together in
 *   the same loop; nested reductions take later passes.
 * - A final loop computes the whole tree per element into `out`, with every statistic a
 *   scalar constant and all elementwise operators fused. Common subexpressions are computed
 *   once per loop.
 * The subtree under a reduction is normally recomputed in each pass that needs it: for a
 * streaming kernel re-reading W/G costs the same memory traffic as reading a stored copy,
 * and needs no rows x cols scratch (180 MB at 4096 x 11008). When that subtree contains
 * log, exp or tanh (8-10 ns per element each, far above memory cost) it is instead stored
 * in a scratch Float32Array during its first pass and read back later. Scratch arrays
 * belong to the kernel and are reused across calls (`release()` drops them).
 *
 * The arithmetic is exactly semantics.ts, in the same order as the interpreter, so results
 * are bit-identical to `interpret`.
 */
import { InputError } from '../errors.ts';
import { evaluate } from './interpret.ts';
import * as sem from './semantics.ts';
import { BINARY_SRC, EXPENSIVE, UNARY_SRC, finishNorm, type ElementwiseUnary } from './semantics.ts';
import { checkTerminalData, type TerminalData } from './terminal-data.ts';
import { isTerminal, shapeOf, terminalsOf, type Tree } from './tree.ts';
import { toInfix } from './print.ts';
import { validateTree } from './validate.ts';

export interface CompiledKernel {
  /** Scores for one layer into `out` (allocated when absent), [rows * cols]. */
  (data: TerminalData, out?: Float32Array): Float32Array;
  readonly tree: Tree;
  /** The generated JavaScript, for inspection and debugging. */
  readonly source: string;
  /** Loops over the full rows x cols tensor per call (statistics passes + the final pass). */
  readonly passes: number;
  /** rows x cols scratch arrays the kernel keeps (subtrees stored instead of recomputed). */
  readonly scratchArrays: number;
  /** Drop the scratch arrays (they are reallocated on the next call). */
  release(): void;
}

interface Reduction {
  id: number;
  key: string;
  op: 'mms' | 'zsn' | 'div';
  /** The subtree whose elements the statistic is taken over (div: the right operand). */
  reduced: Tree;
  start: number;
  finish: number;
}

type RowJob = { kind: 'value'; tree: Tree } | { kind: 'divisor'; tree: Tree };

type KernelFn = (
  W: Float32Array,
  G: Float32Array | null,
  X: Float32Array,
  R: Float32Array[],
  D: number[],
  M: Float32Array[],
  out: Float32Array,
  rows: number,
  cols: number,
  lib: typeof sem,
) => void;

/** Whether `expr` is one call whose closing parenthesis ends the text. */
function wholeCall(expr: string): boolean {
  let depth = 0;
  for (let i = expr.indexOf('('); i < expr.length; i++) {
    if (expr[i] === '(') depth++;
    else if (expr[i] === ')' && --depth === 0) return i === expr.length - 1;
  }
  return false;
}

const WARMUP_DATA: TerminalData = {
  rows: 2,
  cols: 4,
  W: new Float32Array([0.5, 1, 2, 0.25, 3, 0.75, 1.5, 4]),
  G: new Float32Array([1, 0.5, 2, 4, 0.25, 3, 1.5, 0.75]),
  X: new Float32Array([1, 2, 0.5, 4]),
};

/**
 * What code generation needs to know about a tree: each subtree's key (its infix) and shape,
 * the row-shaped values and divisors the interpreter computes per call, the reductions and
 * the pass in which each is accumulated.
 */
interface Plan {
  tree: Tree;
  keyOf(t: Tree): string;
  shape(t: Tree): 'row' | 'full';
  rowJobs: RowJob[];
  /** key -> index into R (row-shaped values) and D (row-shaped divisors). */
  rowIndex: Map<string, number>;
  divIndex: Map<string, number>;
  reductions: Map<string, Reduction>;
  /** The pass that computes the result; earlier ones accumulate statistics. */
  finalPass: number;
}

function planKernel(tree: Tree): Plan {
  const keys = new WeakMap<Tree, string>();
  const keyOf = (t: Tree): string => {
    let k = keys.get(t);
    if (k === undefined) {
      k = toInfix(t);
      keys.set(t, k);
    }
    return k;
  };
  const shapes = new Map<string, 'row' | 'full'>();
  const shape = (t: Tree) => {
    const k = keyOf(t);
    let s = shapes.get(k);
    if (!s) {
      s = shapeOf(t);
      shapes.set(k, s);
    }
    return s;
  };
  const plan: Plan = { tree, keyOf, shape, rowJobs: [], rowIndex: new Map(), divIndex: new Map(), reductions: new Map(), finalPass: 0 };
  scanTree(plan, tree);
  plan.finalPass = schedulePasses(plan);
  return plan;
}

/** Find the row-shaped values and divisors and the reductions of a tree. */
function scanTree(plan: Plan, t: Tree): void {
  const { keyOf, shape, rowJobs, rowIndex, divIndex, reductions } = plan;
  const addReduction = (t: Tree, op: Reduction['op'], reduced: Tree) => {
    const k = keyOf(t);
    if (!reductions.has(k)) reductions.set(k, { id: reductions.size, key: k, op, reduced, start: -1, finish: -1 });
  };
  if (shape(t) === 'row') {
    if (t.op !== 'X' && !rowIndex.has(keyOf(t))) {
      rowIndex.set(keyOf(t), rowIndex.size);
      rowJobs.push({ kind: 'value', tree: t });
    }
    return;
  }
  if (t.op === 'div') {
    const y = t.args[1]!;
    scanTree(plan, t.args[0]!);
    if (shape(y) === 'row') {
      if (!divIndex.has(keyOf(t))) {
        divIndex.set(keyOf(t), divIndex.size);
        rowJobs.push({ kind: 'divisor', tree: y });
      }
    } else {
      scanTree(plan, y);
      addReduction(t, 'div', y);
    }
    return;
  }
  for (const a of t.args) scanTree(plan, a);
  if (t.op === 'mms' || t.op === 'zsn') addReduction(t, t.op, t.args[0]!);
}

/** Give each reduction its passes (after the statistics it depends on); returns the final pass. */
function schedulePasses(plan: Plan): number {
  const { keyOf, shape, reductions } = plan;
  const depsMemo = new Map<string, Set<string>>();
  const deps = (t: Tree): Set<string> => {
    const k = keyOf(t);
    let s = depsMemo.get(k);
    if (s) return s;
    s = new Set<string>();
    if (shape(t) === 'full') {
      if (reductions.has(k)) s.add(k);
      for (const a of t.op === 'div' ? [t.args[0]!] : t.args) for (const d of deps(a)) s.add(d);
    }
    depsMemo.set(k, s);
    return s;
  };
  const schedule = (r: Reduction): void => {
    if (r.start >= 0) return;
    let start = 0;
    for (const dk of deps(r.reduced)) {
      const d = reductions.get(dk)!;
      schedule(d);
      start = Math.max(start, d.finish + 1);
    }
    r.start = start;
    r.finish = start + (r.op === 'zsn' ? 1 : 0);
  };
  let finalPass = 0;
  for (const r of reductions.values()) {
    schedule(r);
    finalPass = Math.max(finalPass, r.finish + 1);
  }
  return finalPass;
}

/**
 * The kernel's source for a given choice of stored subtrees (key -> scratch index), and in
 * which passes each subtree is computed (which drives that choice).
 */
function generateSource(plan: Plan, storedIndex: Map<string, number>): { source: string; computedIn: Map<string, Set<number>> } {
  const storedInPass = new Map<string, number>();
  const computedIn = new Map<string, Set<number>>();
  const src: string[] = ['"use strict";', 'const fr = Math.fround;'];
  for (let k = 0; k < storedIndex.size; k++) src.push(`const M${k} = M[${k}];`);
  for (let k = 0; k < plan.rowIndex.size; k++) src.push(`const R${k} = R[${k}];`);
  for (const [k, idx] of plan.divIndex) src.push(`const D${idx} = D[${idx}]; // ${k}`);
  for (const r of plan.reductions.values()) {
    if (r.op === 'mms') src.push(`let mn${r.id} = 0, rg${r.id} = 1; // ${r.key}`);
    if (r.op === 'zsn') src.push(`let mu${r.id} = 0, sd${r.id} = 1, cnt${r.id} = 0; // ${r.key}`);
    if (r.op === 'div') src.push(`let c${r.id} = 1; // ${r.key}`);
  }
  for (let p = 0; p <= plan.finalPass; p++) src.push(...passSource(plan, p, { storedIndex, storedInPass, computedIn }));
  return { source: src.join('\n'), computedIn };
}

/** One loop over the tensor: the statistics accumulated in pass p, or (final pass) the result. */
function passSource(
  plan: Plan,
  p: number,
  st: { storedIndex: Map<string, number>; storedInPass: Map<string, number>; computedIn: Map<string, Set<number>> },
): string[] {
  const { keyOf, shape, rowIndex, divIndex, reductions, finalPass } = plan;
  const body: string[] = [];
  const memo = new Map<string, string>();
  let usesColumn = false;
  let tmp = 0;
  const emit = (expr: string, k: string): string => {
    const name = `t${tmp++}`;
    body.push(`const ${name} = ${expr};`);
    memo.set(k, name);
    return name;
  };
  const val = (t: Tree): string => {
    const k = keyOf(t);
    const hit = memo.get(k);
    if (hit) return hit;
    if (shape(t) === 'row') {
      usesColumn = true;
      return emit(t.op === 'X' ? 'X[j]' : `R${rowIndex.get(k)}[j]`, k);
    }
    if (isTerminal(t.op)) return emit(`${t.op}[i]`, k);
    const m = st.storedIndex.get(k);
    if (m !== undefined) {
      const first = st.storedInPass.get(k);
      if (first !== undefined && first < p) return emit(`M${m}[i]`, k);
      const name = compute(t, k);
      if (first === undefined) {
        st.storedInPass.set(k, p);
        body.push(`M${m}[i] = ${name};`);
      }
      return name;
    }
    return compute(t, k);
  };
  const compute = (t: Tree, k: string): string => {
    let passes = st.computedIn.get(k);
    if (!passes) st.computedIn.set(k, (passes = new Set()));
    passes.add(p);
    const red = reductions.get(k);
    switch (t.op) {
      case 'mms':
        return emit(`fr((${val(t.args[0]!)} - mn${red!.id}) / rg${red!.id})`, k);
      case 'zsn':
        return emit(`fr((${val(t.args[0]!)} - mu${red!.id}) / sd${red!.id})`, k);
      case 'div': {
        const v = val(t.args[0]!);
        return emit(`fr(${v} / ${red ? `c${red.id}` : `D${divIndex.get(k)}`})`, k);
      }
      case 'add':
      case 'sub':
      case 'mul':
        return emit(BINARY_SRC[t.op](val(t.args[0]!), val(t.args[1]!)), k);
      default:
        return emit(UNARY_SRC[t.op as ElementwiseUnary](val(t.args[0]!)), k);
    }
  };

  const before: string[] = [];
  const after: string[] = [];
  for (const r of reductions.values()) {
    const id = r.id;
    if (r.start === p) {
      const v = val(r.reduced);
      if (r.op === 'mms') {
        before.push(`let lo${id} = Infinity, hi${id} = -Infinity;`);
        body.push(`if (${v} - ${v} === 0) { if (${v} < lo${id}) lo${id} = ${v}; if (${v} > hi${id}) hi${id} = ${v}; }`);
        after.push(`{ const s = lib.finishMms(lo${id}, hi${id}); mn${id} = s.mn; rg${id} = s.rg; }`);
      } else if (r.op === 'zsn') {
        before.push(`let sum${id} = 0, n${id} = 0;`);
        body.push(`if (${v} - ${v} === 0) { sum${id} += ${v}; n${id}++; }`);
        after.push(`mu${id} = lib.finishMean(sum${id}, n${id}); cnt${id} = n${id};`);
      } else {
        before.push(`let q${id} = 0;`);
        body.push(`if (${v} - ${v} === 0) q${id} += ${v} * ${v};`);
        after.push(`c${id} = lib.finishNorm(q${id}, 1);`);
      }
    } else if (r.op === 'zsn' && r.start + 1 === p) {
      const v = val(r.reduced);
      before.push(`let ss${id} = 0;`);
      body.push(`if (${v} - ${v} === 0) { const dv = ${v} - mu${id}; ss${id} += dv * dv; }`);
      after.push(`sd${id} = lib.finishStd(ss${id}, cnt${id});`);
    }
  }
  if (p === finalPass) {
    const v = val(plan.tree);
    // A Float32Array store rounds exactly like fr(), so the root's own fr() can go.
    const last = body[body.length - 1]!;
    const m = /^const (t\d+) = fr\((.*)\);$/.exec(last);
    if (m && m[1] === v && wholeCall(`fr(${m[2]})`)) body[body.length - 1] = `out[i] = ${m[2]};`;
    else body.push(`out[i] = ${v};`);
  }

  const src: string[] = [`// pass ${p}${p === finalPass ? ' (final)' : ' (statistics)'}`, ...before];
  if (usesColumn) {
    src.push('for (let r = 0; r < rows; r++) {', '  const base = r * cols;', '  for (let j = 0; j < cols; j++) {', '    const i = base + j;');
    for (const l of body) src.push(`    ${l}`);
    src.push('  }', '}');
  } else {
    src.push('for (let i = 0, n = rows * cols; i < n; i++) {');
    for (const l of body) src.push(`  ${l}`);
    src.push('}');
  }
  src.push(...after);
  return src;
}

/**
 * Which subtrees under an mms/zsn to store in scratch: those where re-reading beats
 * recomputing. Per extra pass a subtree is needed in, recomputing costs its full-size reads
 * (W, G, stored subtrees) and ~8 reads' worth per log/exp/tanh; storing costs one write and one read.
 */
function chooseStored(plan: Plan, computedIn: Map<string, Set<number>>): Map<string, number> {
  const { keyOf, shape } = plan;
  const storedIndex = new Map<string, number>();
  const recomputeCost = (t: Tree, reads: Set<string>): number => {
    const k = keyOf(t);
    if (storedIndex.has(k)) {
      reads.add(k);
      return 0;
    }
    if (shape(t) === 'row') return 0;
    if (t.op === 'W' || t.op === 'G') {
      reads.add(t.op);
      return 0;
    }
    let trans = EXPENSIVE.has(t.op) ? 1 : 0;
    const operands = t.op === 'div' ? [t.args[0]!] : t.args;
    for (const a of operands) trans += recomputeCost(a, reads);
    return trans;
  };
  for (const r of plan.reductions.values()) {
    const c = r.reduced;
    const k = keyOf(c);
    if (r.op === 'div' || isTerminal(c.op) || shape(c) !== 'full' || storedIndex.has(k)) continue;
    const uses = computedIn.get(k)?.size ?? 0;
    const reads = new Set<string>();
    const trans = recomputeCost(c, reads);
    if ((uses - 1) * (reads.size - 1 + 8 * trans) - 1 > 0) storedIndex.set(k, storedIndex.size);
  }
  return storedIndex;
}

/** Compile a metric; throws an InputError if it is not a valid metric. */
export function compileTree(tree: Tree): CompiledKernel {
  const reason = validateTree(tree);
  if (reason) throw new InputError(`metric ${reason}`);
  const usesG = terminalsOf(tree).has('G');
  const plan = planKernel(tree);
  const storedIndex = chooseStored(plan, generateSource(plan, new Map()).computedIn);
  const { source } = generateSource(plan, storedIndex);
  const fn = new Function('W', 'G', 'X', 'R', 'D', 'M', 'out', 'rows', 'cols', 'lib', source) as KernelFn;
  let scratch: Float32Array[] = [];

  const kernel = (data: TerminalData, out?: Float32Array): Float32Array => {
    checkTerminalData(data, usesG);
    const n = data.rows * data.cols;
    if (out === undefined) out = new Float32Array(n);
    else if (!(out instanceof Float32Array) || out.length !== n) {
      throw new InputError(`kernel output: expected a Float32Array of ${n} values, got ${out?.length}`);
    }
    const M: Float32Array[] = [];
    for (let k = 0; k < storedIndex.size; k++) {
      if (!scratch[k] || scratch[k]!.length < n) scratch[k] = new Float32Array(n);
      M.push(scratch[k]!.length === n ? scratch[k]! : scratch[k]!.subarray(0, n));
    }
    const { R, D } = rowValues(plan.rowJobs, data);
    fn(data.W, data.G, data.X, R, D, M, out, data.rows, data.cols, sem);
    return out;
  };
  const release = () => {
    scratch = [];
  };
  // Run every pass a few times on a tiny layer so V8 has type feedback for all loops before
  // the first real call; otherwise the first large call is optimised piecemeal (on-stack
  // replacement of one loop at a time) and multi-pass kernels measured ~30% slower for good.
  for (let r = 0; r < 3; r++) kernel(WARMUP_DATA);
  release();
  return Object.assign(kernel, { tree, source, passes: plan.finalPass + 1, scratchArrays: storedIndex.size, release });
}

/** Row-shaped values and divisors for one call, by the interpreter (over [cols], negligible work). */
function rowValues(rowJobs: RowJob[], data: TerminalData): { R: Float32Array[]; D: number[] } {
  const R: Float32Array[] = [];
  const D: number[] = [];
  for (const job of rowJobs) {
    const v = evaluate(job.tree, data).data;
    if (job.kind === 'value') {
      R.push(v);
    } else {
      let q = 0;
      for (let j = 0; j < v.length; j++) {
        const e = v[j]!;
        if (e - e === 0) q += e * e;
      }
      D.push(finishNorm(q, data.rows));
    }
  }
  return { R, D };
}
