/** A rollout shard checks the KV capacity its engine reports before returning it (src/activities/gpuNode.ts). */
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { engineKvCapacity, kvCapacityReadFailed } from '../../src/activities/gpuNode';
import { EngineHttpError, EngineProtocolError } from '../../src/engines/http/errors';
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

describe('kvCapacityReadFailed', () => {
  it('leaves the capacity unknown for an engine that did not answer or answered an HTTP error, and says so', () => {
    const warnings: string[] = [];
    const warn = (message: string) => warnings.push(message);
    expect(kvCapacityReadFailed(2, new EngineHttpError('GET http://e/server_info', 503, 'busy'), warn)).toBeUndefined();
    expect(kvCapacityReadFailed(2, new EngineHttpError('GET http://e/server_info', undefined, 'connection refused'), warn)).toBeUndefined();
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^rank 2: could not read the engine's KV capacity, unknown for this shard: .*HTTP 503/);
  });

  it('fails the shard, non-retryably and naming the rank, on a malformed answer', () => {
    const warn = () => {
      throw new Error('a malformed answer must not be logged and passed over');
    };
    const malformed = new EngineProtocolError('GET http://e/metrics', 'vllm:cache_config_info label block_size = "-16" is not a positive integer');
    expect(() => kvCapacityReadFailed(1, malformed, warn)).toThrow(/rank 1 engine KV capacity: .*block_size/);
    try {
      kvCapacityReadFailed(1, malformed, warn);
    } catch (error) {
      expect((error as ApplicationFailure).nonRetryable).toBe(true);
      expect((error as ApplicationFailure).type).toBe('EngineProtocolError');
    }
    const schemaFailure = ApplicationFailure.nonRetryable('rank 1 engine KV capacity returned a malformed answer: x', 'EngineProtocolError');
    expect(() => kvCapacityReadFailed(1, schemaFailure, warn)).toThrow(schemaFailure);
  });
});
