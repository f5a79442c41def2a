/** The sample ledger: each operation, its refusals, and the invariants it keeps. */
import { describe, expect, it } from 'vitest';
import {
  adoptSamples,
  admit,
  assignToShard,
  assignToShards,
  checkLedgerInvariants,
  drop,
  emptyLedger,
  loadsByRank,
  markCompleted,
  ranksInOrderFreed,
  samplesByState,
  samplesOnShard,
  recordTrainedContexts,
  sealBatch,
  selectBatch,
  settleShard,
  settleShards,
  staleIds,
  type DropReason,
  type SampleLedger,
} from '../../src/gpu';
import { deepFreeze, expectRejectedUnchanged, expectValidation } from './helpers';

/** 6 samples at version 0: 0,1,2 running on shard "a" (rank 1), 3 running on "b" (rank 0), 4 completed, 5 waiting. */
function fixture(): SampleLedger {
  let ledger = admit(emptyLedger(), 6, 0).ledger;
  ledger = assignToShard(ledger, [0, 1, 2, 4], 1, 'a');
  ledger = settleShard(ledger, 'a', [0, 1, 2]); // 4 completed; 0,1,2 waiting again
  ledger = assignToShard(ledger, [0, 1, 2], 1, 'a2');
  ledger = assignToShard(ledger, [3], 0, 'b');
  return deepFreeze(ledger);
}

const stateOf = (ledger: SampleLedger, id: number) => ledger.live.find((sample) => sample.id === id)?.state;

describe('emptyLedger and admit', () => {
  it('starts empty with every drop reason at zero', () => {
    expect(emptyLedger()).toEqual({
      nextSampleId: 0,
      live: [],
      counters: { admitted: 0, batched: 0, dropped: { stale: 0, 'environment-timeout': 0, 'max-turns-exceeded': 0 } },
    });
  });

  it('admits consecutive new ids at the given version, waiting, and counts them', () => {
    const first = admit(deepFreeze(emptyLedger()), 3, 0);
    expect(first.ids).toEqual([0, 1, 2]);
    const second = admit(deepFreeze(first.ledger), 2, 4);
    expect(second.ids).toEqual([3, 4]);
    expect(second.ledger.nextSampleId).toBe(5);
    expect(second.ledger.counters.admitted).toBe(5);
    expect(second.ledger.live).toEqual([
      { id: 0, startVersion: 0, state: 'waiting' },
      { id: 1, startVersion: 0, state: 'waiting' },
      { id: 2, startVersion: 0, state: 'waiting' },
      { id: 3, startVersion: 4, state: 'waiting' },
      { id: 4, startVersion: 4, state: 'waiting' },
    ]);
    // The input ledger is untouched.
    expect(first.ledger.live).toHaveLength(3);
  });

  it('admitting zero changes nothing', () => {
    const ledger = fixture();
    const result = admit(ledger, 0, 3);
    expect(result.ids).toEqual([]);
    expect(result.ledger).toEqual(ledger);
  });

  it('refuses a bad count or version', () => {
    const ledger = fixture();
    expectRejectedUnchanged(ledger, (l) => admit(l, -1, 0), 'VAL_INT_RANGE', 'admit: count', 'offending: -1');
    expectRejectedUnchanged(ledger, (l) => admit(l, 1.5, 0), 'VAL_INT_RANGE', 'admit: count', 'expected an integer');
    expectRejectedUnchanged(ledger, (l) => admit(l, 1_000_001, 0), 'VAL_INT_RANGE', 'admit: count');
    expectRejectedUnchanged(ledger, (l) => admit(l, 1, -1), 'VAL_INT_RANGE', 'admit: version', 'offending: -1');
  });
});

describe('assignToShard', () => {
  it('starts waiting samples as one shard on a rank', () => {
    const ledger = fixture();
    const next = assignToShard(ledger, [5], 2, 'c');
    expect(next.live.find((s) => s.id === 5)).toEqual({ id: 5, startVersion: 0, state: 'running', rank: 2, shardId: 'c' });
    expect(samplesOnShard(next, 'c')).toEqual([5]);
    expect(stateOf(ledger, 5)).toBe('waiting');
  });

  it('refuses samples that are not waiting, naming each with its state', () => {
    const ledger = fixture();
    const running = expectRejectedUnchanged(ledger, (l) => assignToShard(l, [5, 0], 2, 'c'), 'VAL_SUBSET', 'assignToShard c', 'must be live and waiting');
    expect(JSON.parse(running.offending)).toEqual([{ id: 0, state: 'running' }]);
    const completed = expectRejectedUnchanged(ledger, (l) => assignToShard(l, [4], 2, 'c'), 'VAL_SUBSET', 'assignToShard c');
    expect(JSON.parse(completed.offending)).toEqual([{ id: 4, state: 'completed' }]);
    const unknown = expectRejectedUnchanged(ledger, (l) => assignToShard(l, [99], 2, 'c'), 'VAL_SUBSET', 'assignToShard c');
    expect(JSON.parse(unknown.offending)).toEqual([{ id: 99, state: 'not live' }]);
  });

  it('refuses a shard id in use, duplicate samples and a bad rank', () => {
    const ledger = fixture();
    expectRejectedUnchanged(ledger, (l) => assignToShard(l, [5], 2, 'b'), 'VAL_NO_DUPLICATES', 'assignToShard: shard id', 'offending: "b"', 'already in use');
    expectRejectedUnchanged(ledger, (l) => assignToShard(l, [5, 5], 2, 'c'), 'VAL_NO_DUPLICATES', 'assignToShard c', 'offending: [5]');
    expectRejectedUnchanged(ledger, (l) => assignToShard(l, [5], -1, 'c'), 'VAL_INT_RANGE', 'assignToShard: rank', 'offending: -1');
  });
});

describe('assignToShards (several new shards, one ledger operation)', () => {
  it('equals assignToShard shard by shard', () => {
    let ledger = admit(emptyLedger(), 8, 0).ledger;
    ledger = deepFreeze(ledger);
    const shards = [
      { id: 'x', rank: 2, sampleIds: [0, 3, 6] },
      { id: 'y', rank: 0, sampleIds: [1, 4] },
      { id: 'z', rank: 1, sampleIds: [7] },
    ];
    const oneByOne = shards.reduce((l, shard) => assignToShard(l, shard.sampleIds, shard.rank, shard.id), ledger);
    expect(assignToShards(ledger, shards)).toEqual(oneByOne);
    expect(assignToShards(ledger, [])).toBe(ledger);
  });

  it('refuses a sample in two shards, a shard id twice or in use, a sample not waiting and a bad rank, changing nothing', () => {
    const ledger = fixture();
    expectRejectedUnchanged(ledger, (l) => assignToShards(l, [{ id: 'c', rank: 0, sampleIds: [5] }, { id: 'd', rank: 1, sampleIds: [5] }]), 'VAL_NO_DUPLICATES', 'assignToShards c, d', 'offending: [5]');
    expectRejectedUnchanged(ledger, (l) => assignToShards(l, [{ id: 'c', rank: 0, sampleIds: [5] }, { id: 'c', rank: 1, sampleIds: [] }]), 'VAL_NO_DUPLICATES', 'assignToShards: shard ids', 'offending: ["c"]');
    expectRejectedUnchanged(ledger, (l) => assignToShards(l, [{ id: 'b', rank: 0, sampleIds: [5] }]), 'VAL_NO_DUPLICATES', 'assignToShards: shard id', 'offending: "b"');
    expectRejectedUnchanged(ledger, (l) => assignToShards(l, [{ id: 'c', rank: 0, sampleIds: [5, 4] }]), 'VAL_SUBSET', 'assignToShards c', '"id":4', '"state":"completed"');
    expectRejectedUnchanged(ledger, (l) => assignToShards(l, [{ id: 'c', rank: -1, sampleIds: [5] }]), 'VAL_INT_RANGE', 'assignToShards c: rank', 'offending: -1');
  });
});

describe('settleShards (several ended shards, one ledger operation)', () => {
  it('equals settleShard shard by shard, and ignores unknown shards with nothing unfinished', () => {
    const ledger = fixture();
    const oneByOne = settleShard(settleShard(ledger, 'a2', [1]), 'b', []);
    expect(settleShards(ledger, [{ shardId: 'a2', unfinished: [1] }, { shardId: 'b', unfinished: [] }, { shardId: 'never-started', unfinished: [] }])).toEqual(oneByOne);
    expect(settleShards(ledger, [])).toBe(ledger);
  });

  it('refuses strays, duplicate unfinished ids and a shard named twice, changing nothing', () => {
    const ledger = fixture();
    expectRejectedUnchanged(ledger, (l) => settleShards(l, [{ shardId: 'b', unfinished: [3] }, { shardId: 'a2', unfinished: [0, 3] }]), 'VAL_SUBSET', 'settleShard a2: unfinished', 'offending: [3]');
    expectRejectedUnchanged(ledger, (l) => settleShards(l, [{ shardId: 'a2', unfinished: [1, 1] }]), 'VAL_NO_DUPLICATES', 'settleShard a2: unfinished', 'offending: [1]');
    expectRejectedUnchanged(ledger, (l) => settleShards(l, [{ shardId: 'a2', unfinished: [] }, { shardId: 'a2', unfinished: [1] }]), 'VAL_NO_DUPLICATES', 'settleShards: shard ids', 'offending: ["a2"]');
  });
});

describe('settleShard', () => {
  it('unfinished samples wait again, the others completed; both leave the rank and shard', () => {
    const ledger = fixture();
    const next = settleShard(ledger, 'a2', [1]);
    expect(next.live.filter((s) => s.id <= 2)).toEqual([
      { id: 0, startVersion: 0, state: 'completed' },
      { id: 1, startVersion: 0, state: 'waiting' },
      { id: 2, startVersion: 0, state: 'completed' },
    ]);
    expect(samplesOnShard(next, 'a2')).toEqual([]);
    expect(stateOf(next, 3)).toBe('running'); // other shards untouched
    expect(next.counters).toEqual(ledger.counters);
  });

  it('is idempotent: settling a settled or unknown shard with nothing unfinished is a no-op', () => {
    const ledger = fixture();
    const settled = settleShard(ledger, 'a2', [1]);
    expect(settleShard(settled, 'a2', [])).toEqual(settled);
    expect(settleShard(settled, 'a', [])).toEqual(settled);
    expect(settleShard(settled, 'never-started', [])).toEqual(settled);
  });

  it('refuses unfinished samples that are not running on the shard (strays), changing nothing', () => {
    const ledger = fixture();
    // 3 runs on shard b, 5 waits, 4 completed, 99 never existed.
    expectRejectedUnchanged(ledger, (l) => settleShard(l, 'a2', [0, 3, 5, 4, 99]), 'VAL_SUBSET', 'settleShard a2: unfinished', 'offending: [3,5,4,99]', 'not running on this shard');
    // Once settled, the shard no longer owns its samples.
    const settled = settleShard(ledger, 'a2', [1]);
    expectRejectedUnchanged(settled, (l) => settleShard(l, 'a2', [1]), 'VAL_SUBSET', 'settleShard a2: unfinished', 'offending: [1]');
  });

  it('refuses duplicate unfinished ids', () => {
    expectRejectedUnchanged(fixture(), (l) => settleShard(l, 'a2', [1, 1]), 'VAL_NO_DUPLICATES', 'settleShard a2: unfinished', 'offending: [1]');
  });
});

describe('sealBatch', () => {
  it('running and completed samples leave the ledger, counted as batched', () => {
    const ledger = fixture();
    const next = sealBatch(ledger, [4, 0]);
    expect(next.live.map((s) => s.id)).toEqual([1, 2, 3, 5]);
    expect(next.counters.batched).toBe(2);
    expect(next.counters.admitted).toBe(6);
    checkLedgerInvariants(next);
  });

  it("adds the batch's context tokens (Σ and Σ²) to trainedContext when they are known, and nothing when they are not", () => {
    const ledger = fixture();
    expect(ledger.counters.trainedContext).toBeUndefined();
    expect(sealBatch(ledger, [4]).counters.trainedContext).toBeUndefined();
    const first = sealBatch(ledger, [4, 0], { tokens: 300, squaredTokens: 50_000 });
    expect(first.counters.trainedContext).toEqual({ samples: 2, tokens: 300, squaredTokens: 50_000 });
    const second = sealBatch(settleShard(first, 'a2', []), [1], { tokens: 100, squaredTokens: 10_000 });
    expect(second.counters.trainedContext).toEqual({ samples: 3, tokens: 400, squaredTokens: 60_000 });
    // A batch whose manifest has no Σ² (written before) trains but leaves the estimate as it was.
    expect(sealBatch(second, [2]).counters.trainedContext).toEqual({ samples: 3, tokens: 400, squaredTokens: 60_000 });
    expectRejectedUnchanged(ledger, (l) => sealBatch(l, [4], { tokens: -1, squaredTokens: 0 }), 'VAL_INT_RANGE', 'trained contexts: context tokens');
    expectRejectedUnchanged(ledger, (l) => sealBatch(l, [4], { tokens: 1, squaredTokens: Number.NaN }), 'AST_POSTCONDITION', 'trained contexts: Σ of squared context tokens');
  });

  it('a batch sealed before its manifest is written takes its contexts after, as if given at the seal', () => {
    const ledger = fixture();
    const atOnce = sealBatch(ledger, [4, 0], { tokens: 300, squaredTokens: 50_000 });
    const sealed = sealBatch(ledger, [4, 0]);
    expect(sealed.counters.trainedContext).toBeUndefined();
    expect(recordTrainedContexts(sealed, 2, { tokens: 300, squaredTokens: 50_000 })).toEqual(atOnce);
    // More samples than were ever batched cannot be a sealed batch's.
    expectRejectedUnchanged(sealed, (l) => recordTrainedContexts(l, 3, { tokens: 300, squaredTokens: 50_000 }), 'VAL_INT_RANGE', 'trained contexts: samples');
  });

  it('a sealed running sample is no longer on its shard: settling the shard later ignores it, naming it unfinished is a stray', () => {
    const sealed = sealBatch(fixture(), [0]);
    expect(samplesOnShard(sealed, 'a2')).toEqual([1, 2]);
    expect(samplesByState(settleShard(sealed, 'a2', [])).completed).toEqual([1, 2, 4]);
    expectValidation(() => settleShard(sealed, 'a2', [0]), 'VAL_SUBSET', 'settleShard a2: unfinished', 'offending: [0]');
  });

  it('refuses waiting, unknown and duplicate samples', () => {
    const ledger = fixture();
    const waiting = expectRejectedUnchanged(ledger, (l) => sealBatch(l, [4, 5]), 'VAL_SUBSET', 'sealBatch', 'must be live and running or completed');
    expect(JSON.parse(waiting.offending)).toEqual([{ id: 5, state: 'waiting' }]);
    const gone = sealBatch(ledger, [4]);
    const again = expectRejectedUnchanged(gone, (l) => sealBatch(l, [4]), 'VAL_SUBSET', 'sealBatch');
    expect(JSON.parse(again.offending)).toEqual([{ id: 4, state: 'not live' }]);
    expectRejectedUnchanged(ledger, (l) => sealBatch(l, [4, 4]), 'VAL_NO_DUPLICATES', 'sealBatch', 'offending: [4]');
  });
});

describe('drop', () => {
  it('waiting and completed samples leave the ledger, counted by reason', () => {
    let ledger: SampleLedger = fixture();
    ledger = drop(ledger, [5], 'stale');
    ledger = drop(ledger, [4], 'environment-timeout');
    ledger = drop(ledger, [], 'max-turns-exceeded');
    expect(ledger.counters.dropped).toEqual({ stale: 1, 'environment-timeout': 1, 'max-turns-exceeded': 0 });
    expect(ledger.live.map((s) => s.id)).toEqual([0, 1, 2, 3]);
    checkLedgerInvariants(ledger);
  });

  it('refuses a running sample', () => {
    const error = expectRejectedUnchanged(fixture(), (l) => drop(l, [5, 3], 'stale'), 'VAL_SUBSET', 'drop (stale)', 'must be live and waiting or completed');
    expect(JSON.parse(error.offending)).toEqual([{ id: 3, state: 'running' }]);
  });

  it('refuses an unknown reason before looking at the samples', () => {
    expectRejectedUnchanged(fixture(), (l) => drop(l, [5], 'bored' as DropReason), 'VAL_SUBSET', 'drop: reason', 'offending: "bored"', 'stale, environment-timeout, max-turns-exceeded');
  });

  it('refuses unknown and duplicate samples', () => {
    expectRejectedUnchanged(fixture(), (l) => drop(l, [42], 'stale'), 'VAL_SUBSET', 'drop (stale)', '"state":"not live"');
    expectRejectedUnchanged(fixture(), (l) => drop(l, [5, 5], 'stale'), 'VAL_NO_DUPLICATES', 'drop (stale)', 'offending: [5]');
  });
});

describe('staleIds', () => {
  it('lists non-running samples lagging the train version by more than the async ratio', () => {
    let ledger = admit(emptyLedger(), 2, 0).ledger; // 0, 1 at v0
    ledger = admit(ledger, 2, 1).ledger; // 2, 3 at v1
    ledger = admit(ledger, 1, 2).ledger; // 4 at v2
    ledger = assignToShard(ledger, [1], 0, 's'); // 1 running: never stale while it runs
    ledger = assignToShard(ledger, [3], 0, 't');
    ledger = settleShard(ledger, 't', []); // 3 completed
    expect(staleIds(ledger, 2, 1)).toEqual([0]); // lag 2 > 1; lag 1 (2, 3) is allowed
    expect(staleIds(ledger, 3, 1)).toEqual([0, 2, 3]);
    expect(staleIds(ledger, 2, 0)).toEqual([0, 2, 3]);
    expect(staleIds(ledger, 2, 2)).toEqual([]);
    expect(staleIds(ledger, 0, 0)).toEqual([]);
  });
});

describe('queries', () => {
  it('samplesByState, samplesOnShard and loadsByRank', () => {
    const ledger = fixture();
    expect(samplesByState(ledger)).toEqual({ waiting: [5], running: [0, 1, 2, 3], completed: [4] });
    expect(samplesOnShard(ledger, 'a2')).toEqual([0, 1, 2]);
    expect(samplesOnShard(ledger, 'a')).toEqual([]);
    // Only running samples count, only on the listed ranks, in the order given; idle ranks show 0.
    expect(loadsByRank(ledger, [2, 1, 0])).toEqual([
      { rank: 2, load: 0 },
      { rank: 1, load: 3 },
      { rank: 0, load: 1 },
    ]);
    expect(loadsByRank(ledger, [1])).toEqual([{ rank: 1, load: 3 }]);
    expect(loadsByRank(ledger, [])).toEqual([]);
  });

  it('loadsByRank leaves out samples the store reported finished while their shard runs on', () => {
    const ledger = fixture();
    // 0 and 3 finished on their engines (still running in the ledger until their shards settle);
    // 4 is completed in the ledger already and 99 is unknown: neither changes a load.
    expect(loadsByRank(ledger, [0, 1], [0, 3, 4, 99])).toEqual([
      { rank: 0, load: 0 },
      { rank: 1, load: 2 },
    ]);
    expect(samplesByState(ledger).running).toEqual([0, 1, 2, 3]);
  });

  it('ranksInOrderFreed: the ranks finished samples free, in completion order, each once', () => {
    const ledger = fixture();
    // 3 (rank 0) finished before 1 and 0 (both rank 1); 4 is completed in the ledger, 5 waits, 99 is unknown.
    expect(ranksInOrderFreed(ledger, [4, 3, 1, 5, 0, 99])).toEqual([0, 1]);
    expect(ranksInOrderFreed(ledger, [2, 3])).toEqual([1, 0]);
    expect(ranksInOrderFreed(ledger, [])).toEqual([]);
  });
});

describe('retries: markCompleted and adoptSamples', () => {
  it('markCompleted turns waiting samples completed and refuses any other', () => {
    const ledger = fixture();
    expect(stateOf(markCompleted(ledger, [5]), 5)).toBe('completed');
    expectRejectedUnchanged(ledger, (l) => markCompleted(l, [4]), 'VAL_SUBSET', 'markCompleted', '"state":"completed"');
  });

  it('adoptSamples takes in samples from a failed attempt, with their ids, and refuses ids already issued', () => {
    const ledger = fixture(); // nextSampleId 6
    const adopted = adoptSamples(ledger, [
      { id: 9, startVersion: 1, state: 'completed' },
      { id: 7, startVersion: 1, state: 'waiting' },
    ]);
    expect(adopted.nextSampleId).toBe(10);
    expect(adopted.counters.admitted).toBe(8);
    expect(adopted.live.slice(-2)).toEqual([
      { id: 7, startVersion: 1, state: 'waiting' },
      { id: 9, startVersion: 1, state: 'completed' },
    ]);
    expect(admit(adopted, 1, 1).ids).toEqual([10]);
    expectRejectedUnchanged(ledger, (l) => adoptSamples(l, [{ id: 5, startVersion: 0, state: 'waiting' }]), 'VAL_INT_RANGE', 'adoptSamples: ids', 'offending: [5]');
    expectRejectedUnchanged(
      ledger,
      (l) => adoptSamples(l, [{ id: 7, startVersion: 0, state: 'waiting' }, { id: 7, startVersion: 0, state: 'completed' }]),
      'VAL_NO_DUPLICATES',
      'adoptSamples',
      'offending: [7]',
    );
    expectRejectedUnchanged(ledger, (l) => adoptSamples(l, [{ id: 8, startVersion: -1, state: 'waiting' }]), 'VAL_INT_RANGE', 'adoptSamples: start version of 8');
  });
});

describe('selectBatch', () => {
  it('picks the oldest policy version first, then completion order', () => {
    let { ledger } = admit(emptyLedger(), 2, 0);
    ledger = admit(ledger, 2, 1).ledger;
    ledger = settleShard(assignToShard(ledger, [0, 1, 2, 3], 0, 's'), 's', []);
    expect(selectBatch(ledger, [3, 1, 2, 0], 3)).toEqual([1, 0, 3]);
    expectValidation(() => selectBatch(ledger, [3], 2), 'VAL_INT_RANGE', 'selectBatch: completed candidates', 'fewer than the batch size 2');
    expectValidation(() => selectBatch(ledger, [3], 0), 'VAL_INT_RANGE', 'batch size');
  });
});

describe('checkLedgerInvariants refuses corrupted ledgers', () => {
  const corrupt = (change: (ledger: SampleLedger) => void): SampleLedger => {
    const ledger = structuredClone(fixture());
    change(ledger);
    return ledger;
  };

  it('accepts what the operations produce', () => {
    expect(() => checkLedgerInvariants(fixture())).not.toThrow();
  });

  it('a sample live twice', () => {
    expectValidation(() => checkLedgerInvariants(corrupt((l) => l.live.push({ ...l.live[5]! }))), 'VAL_NO_DUPLICATES', 'ledger: live sample ids', 'offending: [5]');
  });

  it('conservation broken', () => {
    expectValidation(
      () => checkLedgerInvariants(corrupt((l) => l.live.pop())),
      'AST_POSTCONDITION',
      'ledger: admitted = live + batched + dropped',
      '"admitted":6,"live":5,"batched":0,"dropped":0',
    );
    expectValidation(() => checkLedgerInvariants(corrupt((l) => (l.counters.dropped.stale = 1))), 'AST_POSTCONDITION', 'admitted = live + batched + dropped');
  });

  it('an id never issued', () => {
    expectValidation(() => checkLedgerInvariants(corrupt((l) => (l.nextSampleId = 5))), 'AST_POSTCONDITION', 'ledger: ids were issued', 'offending: [5]');
  });

  it('running without a rank and shard, or placed without running', () => {
    expectValidation(() => checkLedgerInvariants(corrupt((l) => delete l.live[0]!.shardId)), 'AST_POSTCONDITION', 'running ⇔ placed on a rank and shard', '"id":0');
    expectValidation(
      () => checkLedgerInvariants(corrupt((l) => Object.assign(l.live[5]!, { rank: 0, shardId: 'x' }))),
      'AST_POSTCONDITION',
      'running ⇔ placed',
      '"id":5',
    );
  });
});
