/**
 * Bad input from a user (a file, a flag, a metric). The CLI prints its message as one
 * line and exits with code 2; anything else is a bug and gets a stack trace.
 */
export class InputError extends Error {
  override name = 'InputError';
}

/** Throw an InputError unless the condition holds. */
export function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new InputError(message);
}
