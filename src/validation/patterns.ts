/**
 * The named validation patterns, in one place (see docs/design.md §5).
 *
 *   VAL_INT_RANGE      checkIntRange
 *   VAL_SUBSET         checkSubset
 *   VAL_NON_EMPTY      checkNonEmpty
 *   VAL_NO_DUPLICATES  checkNoDuplicates
 *   AST_POSTCONDITION  checkPostcondition
 *
 * Each raises a ValidationError naming what was checked (`subject`) and the offending value,
 * so an error deep in a transition still says which field or invariant broke. Pure: no I/O,
 * no Temporal imports, safe inside workflow code.
 */

export type ValidationPattern =
  | 'VAL_INT_RANGE'
  | 'VAL_SUBSET'
  | 'VAL_NON_EMPTY'
  | 'VAL_NO_DUPLICATES'
  | 'AST_POSTCONDITION';

export class ValidationError extends Error {
  constructor(
    readonly pattern: ValidationPattern,
    /** What was checked, e.g. "shrink set" or "config.pool.gpusPerNode". */
    readonly subject: string,
    /** The offending value(s), rendered for the message. */
    readonly offending: string,
    /** The rule broken, in plain words. */
    readonly detail: string,
  ) {
    // Plain words first; the pattern's name after them, for whoever greps the code.
    super(`${subject}: ${detail} (offending: ${offending}) [${pattern}]`);
    this.name = 'ValidationError';
  }
}

function render(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    const text = JSON.stringify(value);
    return text.length > 200 ? `${text.slice(0, 197)}...` : text;
  } catch {
    return String(value);
  }
}

/** VAL_INT_RANGE: `value` is an integer in [min, max] (both inclusive). Returns it. */
export function checkIntRange(subject: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value)) {
    throw new ValidationError('VAL_INT_RANGE', subject, render(value), 'expected an integer');
  }
  if (value < min || value > max) {
    throw new ValidationError('VAL_INT_RANGE', subject, render(value), `expected an integer in [${min}, ${max}]`);
  }
  return value;
}

/** VAL_SUBSET: every element of `items` is in `universe`. `strict` also requires a proper subset. */
export function checkSubset<T>(
  subject: string,
  items: Iterable<T>,
  universe: Iterable<T>,
  options: { strict?: boolean; universeName?: string } = {},
): void {
  const all = new Set(universe);
  const wanted = [...new Set(items)];
  const outside = wanted.filter((item) => !all.has(item));
  const universeName = options.universeName ?? 'the allowed set';
  if (outside.length > 0) {
    throw new ValidationError('VAL_SUBSET', subject, render(outside), `not all elements are in ${universeName}`);
  }
  if (options.strict && wanted.length >= all.size) {
    throw new ValidationError('VAL_SUBSET', subject, render(wanted), `must be a strict subset of ${universeName}`);
  }
}

/** VAL_NON_EMPTY: the collection has at least one element. Returns it, narrowed. */
export function checkNonEmpty<T>(subject: string, items: readonly T[]): readonly [T, ...T[]] {
  if (items.length === 0) {
    throw new ValidationError('VAL_NON_EMPTY', subject, '[]', 'must not be empty');
  }
  return items as readonly [T, ...T[]];
}

/** VAL_NO_DUPLICATES: no element occurs twice (compared by `key`, default identity). */
export function checkNoDuplicates<T>(
  subject: string,
  items: Iterable<T>,
  key: (item: T) => unknown = (item) => item,
): void {
  const seen = new Set<unknown>();
  const duplicates: unknown[] = [];
  for (const item of items) {
    const k = key(item);
    if (seen.has(k)) duplicates.push(k);
    seen.add(k);
  }
  if (duplicates.length > 0) {
    throw new ValidationError('VAL_NO_DUPLICATES', subject, render([...new Set(duplicates)]), 'duplicates found');
  }
}

/**
 * AST_POSTCONDITION: `holds` is true after an operation. `describe` renders the offending
 * state lazily, so a passing check costs nothing.
 */
export function checkPostcondition(subject: string, holds: boolean, describe: () => string): void {
  if (!holds) {
    throw new ValidationError('AST_POSTCONDITION', subject, describe(), 'postcondition violated');
  }
}
