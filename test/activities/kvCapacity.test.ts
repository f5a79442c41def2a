/** A rollout shard checks the KV capacity its engine reports before returning it (src/activities/gpuNode.ts). */
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { engineKvCapacity } from '../../src/activities/gpuNode';
import type { RolloutEngine } from '../../src/engines/types';

function reporting(answer: unknown): RolloutEngine {
  return { kvCapacityTokens: async () => answer } as unknown as RolloutEngine;
}

describe('engineKvCapacity', () => {
  it('passes a positive integer on and turns "none reported" into null', async () => {
    await expect(engineKvCapacity(reporting(8192), 3)).resolves.toBe(8192);
    await expect(engineKvCapacity(reporting(undefined), 3)).resolves.toBeNull();
  });

  it('refuses anything else with a non-retryable EngineProtocolError naming the rank', async () => {
    for (const bad of [0, -1, 1.5, '8192', null, Number.NaN]) {
      const error = await engineKvCapacity(reporting(bad), 3).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ApplicationFailure);
      expect((error as ApplicationFailure).type).toBe('EngineProtocolError');
      expect((error as ApplicationFailure).nonRetryable).toBe(true);
      expect((error as ApplicationFailure).message).toMatch(/^rank 3 engine KV capacity returned a malformed answer: /);
    }
  });
});
