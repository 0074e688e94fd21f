/**
 * Reading metrics from users: infix (`mul(abs(mul(W,W)),mms(G))`), Pruner-Zero's JSON tree
 * (`{"data": "mul", "left": ..., "right": ...}`) and symprune's JSON tree (`{"op", "args"}`),
 * told apart by their first character and keys. Every malformation is an InputError naming
 * the problem, since metrics arrive from flags and files.
 */
import { InputError } from '../errors.ts';
import { arity, isOp, isTerminal, node, type Op, type Tree } from './tree.ts';

/** Parse a metric in any supported notation. */
export function parseMetric(text: string): Tree {
  const s = text.trim();
  if (s === '') throw new InputError('metric: empty text');
  if (s.startsWith('{') || s.startsWith('[') || s.startsWith('"')) {
    let value: unknown;
    try {
      value = JSON.parse(s);
    } catch (e) {
      throw new InputError(`metric: bad JSON: ${(e as Error).message}`);
    }
    return fromJsonValue(value);
  }
  return parseInfix(s);
}

/**
 * A parsed JSON value: a Pruner-Zero node, a symprune tree, a string holding infix, or an
 * object carrying `tree` or `infix` (an exported metric file).
 */
export function fromJsonValue(value: unknown): Tree {
  if (typeof value === 'string') return parseInfix(value);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InputError('metric: JSON must be an object (a tree) or a string (infix)');
  }
  const o = value as Record<string, unknown>;
  if ('data' in o) return fromPrunerZeroJson(o, 'root');
  if ('op' in o) return fromTreeJson(o, 'root');
  if ('tree' in o) return fromJsonValue(o.tree);
  if ('infix' in o) return fromJsonValue(o.infix);
  throw new InputError('metric: JSON object has none of "data" (Pruner-Zero tree), "op" (symprune tree), "tree" or "infix"');
}

function opName(raw: unknown, where: string): Op {
  if (typeof raw !== 'string') {
    throw new InputError(`metric: ${where}: node label must be a string, got ${JSON.stringify(raw)}`);
  }
  if (/^-?\d+(\.\d+)?$/.test(raw.trim())) {
    throw new InputError(`metric: ${where}: numeric constants (${raw}) are not supported`);
  }
  const op = normalise(raw.trim());
  if (!op) throw new InputError(`metric: ${where}: unknown operator or terminal '${raw}'`);
  return op;
}

/** Pruner-Zero's tree: unary operators keep their operand in `left`, `right` absent. */
export function fromPrunerZeroJson(o: unknown, where = 'root'): Tree {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) {
    throw new InputError(`metric: ${where}: expected a {"data": ...} node`);
  }
  const n = o as Record<string, unknown>;
  for (const k of Object.keys(n)) {
    if (k !== 'data' && k !== 'left' && k !== 'right') {
      throw new InputError(`metric: ${where}: unexpected key "${k}" in Pruner-Zero node`);
    }
  }
  const op = opName(n.data, where);
  const want = arity(op);
  const hasL = n.left !== undefined && n.left !== null;
  const hasR = n.right !== undefined && n.right !== null;
  const got = (hasL ? 1 : 0) + (hasR ? 1 : 0);
  if (got !== want || (want === 1 && !hasL)) {
    const shape = want === 0 ? 'no children' : want === 1 ? 'only "left"' : '"left" and "right"';
    throw new InputError(`metric: ${where}: '${op}' takes ${want} argument(s) (${shape}), got ${got}`);
  }
  const args: Tree[] = [];
  if (hasL) args.push(fromPrunerZeroJson(n.left, `${where}.left`));
  if (hasR) args.push(fromPrunerZeroJson(n.right, `${where}.right`));
  return node(op, ...args);
}

/** symprune's tree: `{"op": "mul", "args": [...]}`; terminals may omit `args`. */
export function fromTreeJson(o: unknown, where = 'root'): Tree {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) {
    throw new InputError(`metric: ${where}: expected an {"op": ...} node`);
  }
  const n = o as Record<string, unknown>;
  const op = opName(n.op, where);
  const rawArgs = n.args === undefined ? [] : n.args;
  if (!Array.isArray(rawArgs)) throw new InputError(`metric: ${where}: "args" must be an array`);
  const want = arity(op);
  if (rawArgs.length !== want) {
    throw new InputError(`metric: ${where}: '${op}' takes ${want} argument(s), got ${rawArgs.length}`);
  }
  return node(op, ...rawArgs.map((a, i) => fromTreeJson(a, `${where}.args[${i}]`)));
}

function normalise(name: string): Op | null {
  if (isOp(name)) return name;
  const up = name.toUpperCase();
  if (isTerminal(up)) return up;
  const low = name.toLowerCase();
  if (isOp(low) && !isTerminal(low)) return low;
  return null;
}

/** Function-call infix: `name` or `name(arg, ...)`, whitespace ignored, names case-insensitive. */
export function parseInfix(text: string): Tree {
  let pos = 0;
  const fail = (msg: string): never => {
    throw new InputError(`metric: ${msg} at position ${pos + 1} in '${text}'`);
  };
  const skipWs = () => {
    while (pos < text.length && /\s/.test(text[pos]!)) pos++;
  };
  const parseExpr = (level: number): Tree => {
    if (level > 500) fail('nesting too deep');
    skipWs();
    const start = pos;
    while (pos < text.length && /[A-Za-z0-9_.+-]/.test(text[pos]!)) pos++;
    const name = text.slice(start, pos);
    if (name === '') {
      fail(pos < text.length ? `unexpected '${text[pos]}'` : 'unexpected end of text');
    }
    if (/^-?\d+(\.\d+)?$/.test(name)) {
      pos = start;
      fail(`numeric constants (${name}) are not supported`);
    }
    const op = normalise(name);
    if (!op) {
      pos = start;
      fail(`unknown operator or terminal '${name}'`);
    }
    const want = arity(op!);
    skipWs();
    const args: Tree[] = [];
    if (text[pos] === '(') {
      pos++;
      skipWs();
      if (text[pos] === ')') {
        pos++;
      } else {
        for (;;) {
          args.push(parseExpr(level + 1));
          skipWs();
          if (text[pos] === ',') {
            pos++;
            continue;
          }
          if (text[pos] === ')') {
            pos++;
            break;
          }
          fail(pos < text.length ? `expected ',' or ')' but found '${text[pos]}'` : "missing ')'");
        }
      }
    }
    if (args.length !== want) {
      pos = start;
      fail(`'${op}' takes ${want} argument(s), got ${args.length}`);
    }
    return node(op!, ...args);
  };
  const t = parseExpr(0);
  skipWs();
  if (pos < text.length) fail(`unexpected '${text[pos]}' after the metric`);
  return t;
}
