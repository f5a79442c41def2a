/**
 * The direct stop of rollout shards in a gpu-node worker (src/activities/gpuNode.ts), run with an
 * activity context of our own: a shard its workflow's cancellation ended before the stop came is
 * answered for with its outcome and its engine's KV report (a cancellation for another reason is
 * not: Temporal may run that shard again), a shard stopped while it claims its samples is
 * answered for once claimed, and an answer says when the shard found its engine behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/activity';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createGpuNodeActivities } from '../../src/activities/gpuNode';
import type { ShardInput, ShardResult } from '../../src/contract/types';
import type { AgentEnvironment, RolloutEngine } from '../../src/engines/types';
import { FsTrajectoryStore, type SampleRecord } from '../../src/store';
import { inActivity } from '../helpers/activityContext';
import { ABORTED_TOKENS, HoldingEngine } from '../helpers/holdingEngine';

const RUN = 'run-stop';
/** A store whose claims wait until `open()`: holds a shard in its claim. Counts checkpoints by sample. */
class GatedStore extends FsTrajectoryStore {
  private gate: Promise<void> = Promise.resolve();
  private release: () => void = () => undefined;
  claiming = false;
  readonly checkpointed: number[] = [];

  override checkpoint(record: SampleRecord, shardId: string): ReturnType<FsTrajectoryStore['checkpoint']> {
    this.checkpointed.push(record.id);
    return super.checkpoint(record, shardId);
  }

  hold(): void {
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  open(): void {
    this.release();
  }

  override async claim(ids: readonly number[], shardId: string, options?: { from?: string }): Promise<void> {
    this.claiming = true;
    await this.gate;
    return super.claim(ids, shardId, options);
  }
}

function sample(id: number): SampleRecord {
  return { id, startVersion: 0, promptTokens: 10, turns: [], status: 'running', startedAtMs: Date.now() };
}

describe('stopShards', () => {
  let dir: string;
  let store: GatedStore;
  let engine: HoldingEngine;
  let activities: ReturnType<typeof createGpuNodeActivities>;
  const shard = (shardId: string, sampleIds: number[]): ShardInput => ({
    runId: RUN,
    shardId,
    rank: 0,
    sampleIds,
    version: 0,
    maxTurns: 4,
    maxTokens: 10_000,
    environmentTimeoutMs: 3_600_000,
  });

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'timeshare-stop-'));
    store = new GatedStore(dir, RUN, { fsync: false });
    await store.createSamples([0, 1, 2].map(sample));
    engine = new HoldingEngine();
    const environment = {
      reset: () => Promise.reject(new Error('not used')),
      step: () => Promise.reject(new Error('no turn ends in these tests')),
    } as unknown as AgentEnvironment;
    activities = createGpuNodeActivities({
      node: 0,
      runId: RUN,
      engines: new Map([[0, engine as unknown as RolloutEngine]]),
      trainer: undefined,
      environment,
      store: () => store,
      weightsPath: (_run, version) => path.join(dir, `v${version}.json`),
      weightsDir: () => dir,
      timeScale: 1,
      heartbeatIntervalMs: 60_000,
      now: () => Date.now(),
    });
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** The outcomes with their unfinished ids in order: a shard's samples end in whatever order their checkpoints finish. */
  const inIdOrder = <T extends { unfinished: number[] }>(outcomes: readonly T[] | undefined): T[] | undefined =>
    outcomes?.map((outcome) => ({ ...outcome, unfinished: [...outcome.unfinished].sort((a, b) => a - b) }));

  /** Runs a shard on samples 0 and 1 until both turns are under way, then cancels it for `reason`; then asks the stop. */
  async function cancelledThenStopped(shardId: string, reason: 'CANCELLED' | 'TIMED_OUT') {
    const running = inActivity<ShardResult>(() => activities.runRolloutShard(shard(shardId, [0, 1])));
    await engine.turnsStarted(2);
    running.cancel(reason);
    await expect(running.result).rejects.toBeInstanceOf(CancelledFailure);
    return inActivity(() => activities.stopShards({ runId: RUN, shardIds: [shardId] })).result;
  }

  it('answers for a shard its workflow cancelled before the stop came, with the outcome its checkpoints hold and its engine\'s KV report', async () => {
    const answer = await cancelledThenStopped('s-cancelled', 'CANCELLED');
    expect(answer.stopped).toEqual([]);
    expect(answer.checkpointed).toEqual(['s-cancelled']);
    expect(inIdOrder(answer.outcomes)).toEqual([{ shardId: 's-cancelled', completed: [], unfinished: [0, 1], dropped: [], kvCapacityTokens: 4096 }]);
    for (const record of await store.readSamples([0, 1])) {
      expect(record.owner).toBe('s-cancelled@1');
      expect(record.partial?.tokens).toBe(ABORTED_TOKENS);
    }
  });

  it('does not answer for a shard whose cancellation was a timeout (Temporal may run it again)', async () => {
    const answer = await cancelledThenStopped('s-timed-out', 'TIMED_OUT');
    expect(answer).toEqual({ stopped: [], checkpointed: [], outcomes: [] });
  });

  it('writes no checkpoint for a turn aborted before its first token; one with tokens is kept', async () => {
    const prefix = { turn: 0, tokens: 5, weightVersion: 0, tokenVersions: [{ version: 0, tokens: 5 }], rank: 3 };
    await store.createSamples([{ ...sample(3), partial: prefix }]);
    const running = inActivity<ShardResult>(() => activities.runRolloutShard(shard('s-queued', [1, 3])));
    await engine.turnsStarted(2);
    engine.abortedTokens = 0;
    const before = await store.readSamples([1, 3]);
    const answer = await inActivity(() => activities.stopShards({ runId: RUN, shardIds: ['s-queued'] })).result;
    expect(inIdOrder(answer.outcomes)).toMatchObject([{ shardId: 's-queued', completed: [], unfinished: [1, 3], dropped: [] }]);
    await running.result;
    expect(store.checkpointed).toEqual([]);
    // As claimed: no partial turn for the sample that had none, the earlier prefix (from rank 3) for the other.
    expect(await store.readSamples([1, 3])).toEqual(before);
    expect((await store.readSamples([3]))[0]!.partial).toEqual(prefix);

    engine.abortedTokens = ABORTED_TOKENS;
    const again = inActivity<ShardResult>(() => activities.runRolloutShard(shard('s-decoding', [1])));
    await engine.turnsStarted(3);
    await inActivity(() => activities.stopShards({ runId: RUN, shardIds: ['s-decoding'] })).result;
    await again.result;
    expect(store.checkpointed).toEqual([1]);
    expect((await store.readSamples([1]))[0]!.partial).toMatchObject({ turn: 0, tokens: ABORTED_TOKENS, rank: 0 });
  });

  it('stops a shard that is still claiming its samples, and answers once they are claimed', async () => {
    store.hold();
    const running = inActivity<ShardResult>(() => activities.runRolloutShard(shard('s-claiming', [1, 2])));
    await expect.poll(() => store.claiming).toBe(true);
    const stop = inActivity(() => activities.stopShards({ runId: RUN, shardIds: ['s-claiming'] })).result;
    let answered = false;
    void stop.then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(answered).toBe(false); // held in the claim: the answer waits for it

    store.open();
    const answer = await stop;
    expect(answer.stopped).toEqual(['s-claiming']);
    expect(inIdOrder(answer.outcomes)).toEqual([{ shardId: 's-claiming', completed: [], unfinished: [1, 2], dropped: [] }]);
    expect(inIdOrder([await running.result])).toMatchObject([{ shardId: 's-claiming', unfinished: [1, 2] }]);
    expect(engine.started).toEqual([]); // stopped before any turn began
    for (const record of await store.readSamples([1, 2])) expect(record.owner).toBe('s-claiming@1');
  });

  it("a stopped shard's answer says its engine was behind its version (the workflow may settle it before the shard's own result comes)", async () => {
    // The engine serves v0; the shard is of v1, whose weights were never exported (broadcast sync).
    const running = inActivity<ShardResult>(() => activities.runRolloutShard({ ...shard('s-behind', [0, 1]), version: 1 }));
    await engine.turnsStarted(2);
    const answer = await inActivity(() => activities.stopShards({ runId: RUN, shardIds: ['s-behind'] })).result;
    expect(inIdOrder(answer.outcomes)).toEqual([{ shardId: 's-behind', completed: [], unfinished: [0, 1], dropped: [], engineBehind: 0 }]);
    expect(await running.result).toMatchObject({ shardId: 's-behind', engineBehind: 0 });
  });

  it("an engine that restarted while its shard ran: the stop's answer and the shard's result say so", async () => {
    // The engine serves the shard's v1 at its start, then restarts (its base weights, v0) mid-turn.
    engine.weightVersion = 1;
    const running = inActivity<ShardResult>(() => activities.runRolloutShard({ ...shard('s-restarted', [0, 1]), version: 1 }));
    await engine.turnsStarted(2);
    engine.weightVersion = 0;
    const answer = await inActivity(() => activities.stopShards({ runId: RUN, shardIds: ['s-restarted'] })).result;
    expect(inIdOrder(answer.outcomes)).toEqual([{ shardId: 's-restarted', completed: [], unfinished: [0, 1], dropped: [], engineBehind: 0 }]);
    expect(await running.result).toMatchObject({ shardId: 's-restarted', engineBehind: 0 });
  });

  it('an engine that still serves the shard\'s version at the stop reports nothing', async () => {
    engine.weightVersion = 1;
    const running = inActivity<ShardResult>(() => activities.runRolloutShard({ ...shard('s-steady', [0, 1]), version: 1 }));
    await engine.turnsStarted(2);
    const answer = await inActivity(() => activities.stopShards({ runId: RUN, shardIds: ['s-steady'] })).result;
    expect(inIdOrder(answer.outcomes)).toEqual([{ shardId: 's-steady', completed: [], unfinished: [0, 1], dropped: [] }]);
    expect(await running.result).not.toHaveProperty('engineBehind');
    // Read at the start (catch-up) and once more at the stop.
    expect(engine.statusReads).toBe(2);
  });
});
