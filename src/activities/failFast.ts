/**
 * Activities raise the errors no retry can fix as non-retryable failures themselves, so the
 * workflows' retry policies need not carry the list (it was repeated in every scheduled
 * activity's history event).
 */
import { ApplicationFailure } from '@temporalio/common';
import { NON_RETRYABLE_ERROR_TYPES } from '../contract/errors';
import type { AsyncFunctions } from './heartbeat';

export function toNonRetryable(error: unknown): unknown {
  if (error instanceof ApplicationFailure || !(error instanceof Error) || !NON_RETRYABLE_ERROR_TYPES.includes(error.name)) return error;
  return ApplicationFailure.create({ message: error.message, type: error.name, nonRetryable: true, cause: error });
}

/** Wraps each activity so that an error of a non-retryable type fails it for good. */
export function failingFast<T extends AsyncFunctions<T>>(activities: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities) as [string, (...args: unknown[]) => Promise<unknown>][]) {
    wrapped[name] = async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (error) {
        throw toNonRetryable(error);
      }
    };
  }
  return wrapped as T;
}
