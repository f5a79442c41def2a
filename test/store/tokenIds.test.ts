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
    expect(batchTrajectories([completed])).toEqual([
      { sampleId: 3, reward: 0.5, inputIds: [7, 10, 1, 11, 4, 2], lossMask: [0, 0, 1, 1, 0, 1], logprobs: [0, 0, -1, -1, 0, -1] },
    ]);
    expect(batchTrajectories([{ ...sample(1), status: 'completed', reward: 1, completedAtMs: 2 }])).toBeUndefined();
    expect(() => batchTrajectories([completed, { ...sample(1), status: 'completed', reward: 1, completedAtMs: 2 }])).toThrow(/mixes samples with and without token ids/);
  });
});
