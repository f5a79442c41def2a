/** Token ids on sample records: validated against the counts; the context and batch views built from them. */
import { describe, expect, it } from 'vitest';
import { batchTrajectories } from '../../src/activities/gpuNode';
import { contextIds, sampleRecordSchema, type SampleRecord } from '../../src/store';
import { sample, turn } from './helpers';

const idTurn = (index: number, out: number[], obs: number[]) =>
  turn(index, { generatedTokens: out.length, observationTokens: obs.length, outputIds: out, logprobs: out.map(() => -1), observationIds: obs });

describe('token ids on sample records', () => {
  const record: SampleRecord = sample(3, {
    promptTokens: 2,
    promptIds: [7, 10],
    turns: [idTurn(0, [1, 11], [4]), idTurn(1, [2], [])],
    partial: { turn: 2, tokens: 1, weightVersion: 1, rank: 1, ids: [5], logprobs: [-0.5] },
  });

  it('accepts ids that agree with the counts and builds the context without the partial prefix', () => {
    expect(sampleRecordSchema.safeParse(record).success).toBe(true);
    expect(contextIds(record)).toEqual([7, 10, 1, 11, 4, 2]);
    expect(contextIds(sample(1))).toBeUndefined();
  });

  it.each([
    ['promptIds', { promptIds: [7] }, 'promptIds: 1 entries for 2 tokens'],
    ['outputIds', { turns: [{ ...idTurn(0, [1, 11], [4]), generatedTokens: 3 }] }, 'outputIds: 2 entries for 3 tokens'],
    ['observationIds', { turns: [{ ...idTurn(0, [1], [4]), observationTokens: 0 }] }, 'observationIds: 1 entries for 0 tokens'],
    ['partial ids', { partial: { turn: 2, tokens: 2, weightVersion: 1, rank: 1, ids: [5], logprobs: [-0.5, -1] } }, 'partial ids: 1 entries for 2 tokens'],
  ])('rejects %s that disagree with the counts', (_name, overrides, message) => {
    const parsed = sampleRecordSchema.safeParse({ ...record, ...overrides });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.message).toContain(message);
  });

  it('a batch becomes trajectories: policy tokens masked in with their logprobs, prompt and observations out', () => {
    const completed: SampleRecord = { ...record, partial: undefined, status: 'completed', reward: 0.5, completedAtMs: 9 };
    delete completed.partial;
    expect(batchTrajectories([completed], 0)).toEqual([
      { sampleId: 3, reward: 0.5, inputIds: [7, 10, 1, 11, 4, 2], lossMask: [0, 0, 1, 1, 0, 1], logprobs: [0, 0, -1, -1, 0, -1], versions: [0, 0, 0, 0, 0, 0] },
    ]);
    expect(batchTrajectories([{ ...sample(1), status: 'completed', reward: 1, completedAtMs: 2 }], 0)).toBeUndefined();
    expect(() => batchTrajectories([completed, { ...sample(1), status: 'completed', reward: 1, completedAtMs: 2 }], 0)).toThrow(/mixes samples with and without token ids/);
  });

  describe('per-token versions', () => {
    // Turn 0 at v0; turn 1 resumed across a sync: 2 tokens of v0 kept, 1 of v1; turn 2 at v2.
    const resumed: SampleRecord = sample(4, {
      promptTokens: 1,
      promptIds: [7],
      turns: [
        idTurn(0, [1, 11], [4]),
        { ...idTurn(1, [2, 3, 5], [6]), weightVersion: 1, tokenVersions: [{ version: 0, tokens: 2 }, { version: 1, tokens: 1 }] },
        { ...idTurn(2, [8], []), weightVersion: 2 },
      ],
      status: 'completed',
      reward: 1,
      completedAtMs: 9,
    });

    it('a record checks that token versions cover the generated tokens', () => {
      expect(sampleRecordSchema.safeParse(resumed).success).toBe(true);
      const bad = { ...resumed, turns: [resumed.turns[0]!, { ...resumed.turns[1]!, tokenVersions: [{ version: 0, tokens: 2 }] }, resumed.turns[2]!] };
      const parsed = sampleRecordSchema.safeParse(bad);
      expect(parsed.success).toBe(false);
      expect(parsed.error?.message).toContain('token versions cover 2 tokens of 3');
    });

    it('the batch carries one behaviour version per token, across the sync', () => {
      const [t] = batchTrajectories([resumed], 2)!;
      expect(t!.inputIds).toEqual([7, 1, 11, 4, 2, 3, 5, 6, 8]);
      expect(t!.lossMask).toEqual([0, 1, 1, 0, 1, 1, 1, 0, 1]);
      expect(t!.versions).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 2]);
    });

    it('maxTokenLag leaves tokens that lag more out of the loss, and keeps them as context', () => {
      const [t] = batchTrajectories([resumed], 2, 1)!;
      expect(t!.inputIds).toHaveLength(9);
      expect(t!.lossMask).toEqual([0, 0, 0, 0, 0, 0, 1, 0, 1]);
    });

    it('a token from a version after the one trained from is refused', () => {
      expect(() => batchTrajectories([resumed], 1)).toThrow(/version after v1/);
    });
  });
});
