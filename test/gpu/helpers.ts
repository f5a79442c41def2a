/** Shared assertions for the pure-core tests (not a test file itself). */
import { expect } from 'vitest';
import { ValidationError, type LayoutInput, type ValidationPattern } from '../../src/gpu';

/** Runs `fn`, expects a ValidationError, and returns it. */
export function catchValidation(fn: () => unknown): ValidationError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a ValidationError').toBeInstanceOf(ValidationError);
  return caught as ValidationError;
}

/**
 * Expects `fn` to throw a ValidationError of `pattern` whose subject contains `subject` and whose
 * message contains every fragment (checked against the message, which carries subject and offending).
 */
export function expectValidation(
  fn: () => unknown,
  pattern: ValidationPattern,
  subject: string,
  ...fragments: string[]
): ValidationError {
  const error = catchValidation(fn);
  expect(error.pattern).toBe(pattern);
  expect(error.subject).toContain(subject);
  expect(error.message).toContain(error.subject);
  expect(error.message).toContain(`(offending: ${error.offending})`);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  return error;
}

/** Expects `fn(state)` to be refused with a ValidationError and `state` to be left exactly as it was. */
export function expectRejectedUnchanged<S>(
  state: S,
  fn: (state: S) => unknown,
  pattern: ValidationPattern,
  subject: string,
  ...fragments: string[]
): ValidationError {
  const before = structuredClone(state);
  const error = expectValidation(() => fn(state), pattern, subject, ...fragments);
  expect(state).toEqual(before);
  return error;
}

/** Freezes a plain-data value all the way down, so any write to an input throws in strict mode. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

export const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

/** 2 nodes × 4 GPUs, ranks of 2 ([0,1] [2,3] [4,5] [6,7]), training on GPUs 0–2 (touches ranks 0 and 1). */
export const MULTIPLEXED: LayoutInput = {
  strategy: 'multiplexed',
  nodes: 2,
  gpusPerNode: 4,
  rolloutGpus: range(8),
  gpusPerRank: 2,
  trainGpus: [0, 1, 2],
  asyncRatio: 1,
};

/** 1 node × 4 GPUs, ranks of 2, every GPU both rolls out and trains. */
export const COLOCATED: LayoutInput = {
  strategy: 'colocated',
  nodes: 1,
  gpusPerNode: 4,
  rolloutGpus: range(4),
  gpusPerRank: 2,
  trainGpus: range(4),
  asyncRatio: 0,
};

/** 2 nodes × 4 GPUs: node 0 rolls out (ranks of 2), node 1 trains. */
export const DISAGGREGATED: LayoutInput = {
  strategy: 'disaggregated',
  nodes: 2,
  gpusPerNode: 4,
  rolloutGpus: range(4),
  gpusPerRank: 2,
  trainGpus: range(4, 4),
  asyncRatio: 1,
};
