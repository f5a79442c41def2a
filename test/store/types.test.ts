import { describe, expect, it } from 'vitest';
import {
  batchManifestSchema,
  contextTokens,
  FencingError,
  generatedTokens,
  SampleNotFoundError,
  sampleRecordSchema,
  StoreCorruptionError,
  totalTokens,
} from '../../src/store';
import { sample, turn } from './helpers';

describe('sample record schema', () => {
  it('accepts a running sample with a partial turn and a completed one', () => {
    expect(sampleRecordSchema.safeParse(sample(1, { turns: [turn(0), turn(1)], partial: { turn: 2, tokens: 5, weightVersion: 1, rank: 0 } })).success).toBe(true);
    expect(sampleRecordSchema.safeParse(sample(1, { status: 'completed', reward: 0, completedAtMs: 9, batch: 3 })).success).toBe(true);
  });

  it.each([
    ['turns out of order', sample(1, { turns: [turn(0), turn(2)] })],
    ['partial turn that is not the next turn', sample(1, { turns: [turn(0)], partial: { turn: 0, tokens: 1, weightVersion: 0, rank: 0 } })],
    ['completed without reward', sample(1, { status: 'completed', completedAtMs: 1 })],
    ['completed with a partial turn', sample(1, { status: 'completed', reward: 1, completedAtMs: 1, partial: { turn: 0, tokens: 1, weightVersion: 0, rank: 0 } })],
    ['dropped without reason', sample(1, { status: 'dropped' })],
    ['running with a batch', sample(1, { batch: 2 })],
    ['negative tokens', sample(1, { promptTokens: -1 })],
    ['fractional id', sample(1.5)],
    ['non-finite reward', sample(1, { status: 'completed', reward: Number.NaN, completedAtMs: 1 })],
  ])('rejects %s', (_name, record) => {
    expect(sampleRecordSchema.safeParse(record).success).toBe(false);
  });

  it('rejects an empty batch manifest', () => {
    expect(batchManifestSchema.safeParse({ iteration: 0, fromVersion: 0, sampleIds: [], totalTokens: 0, createdAtMs: 0 }).success).toBe(false);
  });

  it('takes a manifest with or without Σ² of its contexts, never a negative or non-finite one', () => {
    const manifest = { iteration: 0, fromVersion: 0, sampleIds: [1], totalTokens: 3, createdAtMs: 0 };
    expect(batchManifestSchema.safeParse(manifest).success).toBe(true);
    expect(batchManifestSchema.safeParse({ ...manifest, totalTokensSquared: 9 }).success).toBe(true);
    expect(batchManifestSchema.safeParse({ ...manifest, totalTokensSquared: -1 }).success).toBe(false);
    expect(batchManifestSchema.safeParse({ ...manifest, totalTokensSquared: Number.POSITIVE_INFINITY }).success).toBe(false);
  });
});

describe('token accounting', () => {
  it('context = prompt + generated + observations + partial; total excludes the partial turn', () => {
    const record = sample(1, {
      promptTokens: 100,
      turns: [turn(0, { generatedTokens: 10, observationTokens: 50 }), turn(1, { generatedTokens: 20, observationTokens: 0 })],
      partial: { turn: 2, tokens: 7, weightVersion: 1, rank: 3 },
    });
    expect(totalTokens(record)).toBe(180);
    expect(contextTokens(record)).toBe(187);
    expect(generatedTokens(record)).toBe(37);
    expect(contextTokens(sample(2))).toBe(100);
  });
});

describe('errors', () => {
  it('name the sample and the path', () => {
    expect(new SampleNotFoundError(3, '/x/3.json').message).toMatch(/sample 3 .*\/x\/3\.json/);
    expect(new StoreCorruptionError('sample 3', '/x/3.json', 'bad', 3)).toMatchObject({ name: 'StoreCorruptionError', sampleId: 3 });
    const fencing = new FencingError(3, '/x/3.json', 'old', 'new');
    expect(fencing.name).toBe('FencingError');
    expect(fencing.message).toMatch(/"old" may not write sample 3 \(file \/x\/3\.json\): owner is "new"/);
  });
});
