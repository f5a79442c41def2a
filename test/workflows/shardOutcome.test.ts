import { describe, expect, it } from 'vitest';
import { accountsForShard, inShardOrder } from '../../src/workflows/shards';
import { ValidationError } from '../../src/validation/patterns';

const ref = { id: 's1', rank: 0, sampleIds: [4, 2, 9, 7] };

describe("a stopped shard's reported outcome", () => {
  it("is put in the shard's sample order, whatever order its samples ended in", () => {
    const reported = { shardId: 's1', completed: [7, 4], unfinished: [9], dropped: [{ id: 2, reason: 'environment-timeout' }] };
    expect(inShardOrder(ref, reported)).toEqual({ shardId: 's1', completed: [4, 7], unfinished: [9], dropped: [{ id: 2, reason: 'environment-timeout' }] });
    expect(inShardOrder(ref, { shardId: 's1', completed: [], unfinished: [9, 7, 2, 4], dropped: [] }).unfinished).toEqual([4, 2, 9, 7]);
  });

  it('must account for each of its samples exactly once, and be this shard’s', () => {
    const missing = { shardId: 's1', completed: [4, 2], unfinished: [9], dropped: [] };
    expect(() => inShardOrder(ref, missing)).toThrow(ValidationError);
    const twice = { shardId: 's1', completed: [4, 2, 9], unfinished: [9, 7], dropped: [] };
    expect(() => inShardOrder(ref, twice)).toThrow(/accounts for each of its 4 samples once/);
    const stray = { shardId: 's1', completed: [4, 2, 9], unfinished: [8], dropped: [] };
    expect(() => inShardOrder(ref, stray)).toThrow(ValidationError);
    const other = { shardId: 's2', completed: [4, 2, 9, 7], unfinished: [], dropped: [] };
    expect(() => inShardOrder(ref, other)).toThrow(ValidationError);
    // The stop checks first and settles such a shard from the store instead.
    for (const bad of [missing, twice, stray, other]) expect(accountsForShard(ref, bad)).toBe(false);
    const sameCountOneTwice = { shardId: 's1', completed: [4, 2, 9], unfinished: [9], dropped: [] };
    expect(accountsForShard(ref, sameCountOneTwice)).toBe(false);
    expect(accountsForShard(ref, { shardId: 's1', completed: [7], unfinished: [2, 4], dropped: [{ id: 9, reason: 'stale' }] })).toBe(true);
  });
});
