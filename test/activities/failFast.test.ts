import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { failingFast } from '../../src/activities/failFast';
import { ValidationError } from '../../src/validation/patterns';
import { FencingError } from '../../src/store';

describe('failingFast', () => {
  const activities = failingFast({
    async invalid(): Promise<void> {
      throw new ValidationError('VAL_INT_RANGE', 'rank', '99', 'must be in 0..7');
    },
    async fenced(): Promise<void> {
      throw new FencingError(3, '/store/samples/3.json', 'shard-a', 'shard-b');
    },
    async flaky(): Promise<void> {
      throw new Error('connection reset');
    },
    async fine(x: number): Promise<number> {
      return x + 1;
    },
  });

  it('turns the non-retryable error types into non-retryable failures of the same type, cause kept', async () => {
    const failure = await activities.invalid().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'ValidationError', nonRetryable: true });
    expect((failure as ApplicationFailure).message).toContain('must be in 0..7');
    expect((failure as ApplicationFailure).cause).toBeInstanceOf(ValidationError);
    await expect(activities.fenced()).rejects.toMatchObject({ type: 'FencingError', nonRetryable: true });
  });

  it('leaves other errors retryable and results untouched', async () => {
    const failure = await activities.flaky().catch((error: unknown) => error);
    expect(failure).not.toBeInstanceOf(ApplicationFailure);
    expect((failure as Error).message).toBe('connection reset');
    expect(await activities.fine(1)).toBe(2);
  });
});
