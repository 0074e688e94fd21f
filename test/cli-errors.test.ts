import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describeError, reportError } from '../src/cli/cli.ts';
import { InputError } from '../src/errors.ts';

test('the last resort: bad input exit 2, a bug exit 1 with a hint, always one line', () => {
  assert.deepEqual(describeError(new InputError('--seqlen 0: must be\nan integer')), { line: 'symprune: --seqlen 0: must be an integer', code: 2 });
  let fsError: unknown;
  try {
    fs.readFileSync('/nonexistent/x.json');
  } catch (e) {
    fsError = e;
  }
  assert.deepEqual(describeError(fsError), { line: "symprune: /nonexistent/x.json: no such file or directory, open '/nonexistent/x.json'", code: 2 });
  const bug = describeError(new TypeError('cannot read properties of undefined\n    at foo'));
  assert.equal(bug.code, 1);
  assert.equal(bug.line, 'symprune: internal error: TypeError: cannot read properties of undefined at foo (SYMPRUNE_DEBUG=1 shows the stack)');
  assert.equal(describeError('a string').line, 'symprune: internal error: a string (SYMPRUNE_DEBUG=1 shows the stack)');
});

test('SYMPRUNE_DEBUG=1 adds the stack after the line', () => {
  const out: string[] = [];
  const before = process.env.SYMPRUNE_DEBUG;
  try {
    delete process.env.SYMPRUNE_DEBUG;
    assert.equal(reportError(new Error('boom'), (s) => out.push(s)), 1);
    assert.deepEqual(out, ['symprune: internal error: boom (SYMPRUNE_DEBUG=1 shows the stack)\n']);
    out.length = 0;
    process.env.SYMPRUNE_DEBUG = '1';
    assert.equal(reportError(new Error('boom'), (s) => out.push(s)), 1);
    assert.equal(out[0], 'symprune: internal error: boom\n');
    assert.match(out[1]!, /^Error: boom\n\s+at /);
  } finally {
    if (before === undefined) delete process.env.SYMPRUNE_DEBUG;
    else process.env.SYMPRUNE_DEBUG = before;
  }
});
