/**
 * A group of rollout shards on one node's ranks as one activity (runRolloutShards,
 * src/activities/gpuNode.ts): every member runs as a shard alone does, under one heartbeat; a
 * direct stop takes one member and leaves its siblings running; a member that ended while its
 * siblings run is answered for by a later stop; a member's failure stops its siblings (each
 * checkpoints) and fails the group with that error; the group's cancellation ends every member.
 * Simulated and holding engines, a real store; the activity in a context of our own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createGpuNodeActivities } from '../../src/activities/gpuNode';
import type { ShardGroupInput, ShardGroupResult, ShardInput, ShardResult } from '../../src/contract/types';
import { EngineHttpError, EngineProtocolError } from '../../src/engines/http/errors';
import { SimEnvironment } from '../../src/engines/simulated/environment';
import { SimRolloutEngine } from '../../src/engines/simulated/rolloutEngine';
import type { RolloutEngine, TurnRequest, TurnResult } from '../../src/engines/types';
import { FsTrajectoryStore, type SampleRecord } from '../../src/store';
import { clock, constantWorkload, cost, memory } from '../engines/helpers';
import { type ActivityWatch, inActivity } from '../helpers/activityContext';
import { ABORTED_TOKENS, HoldingEngine } from '../helpers/holdingEngine';

const RUN = 'run-group';
const TIME_SCALE = 0.0001;
const workload = constantWorkload(20, { turns: { median: 3, p90: 3 }, envStepMs: { median: 10, p90: 10 } });

/** A simulated engine on `rank` that reports `kvCapacityTokens`: its shards run their samples to completion. */
function simEngine(rank: number, kvCapacityTokens: number): SimRolloutEngine {
  return new SimRolloutEngine({ rank, gpus: [rank], cost: cost(), workload, clock: clock(TIME_SCALE), memory: memory([rank]), kvCapacityTokens });
}

/** An engine whose turns wait until `open()`: holds its shard running while the test acts on its siblings. */
function gatedEngine(engine: RolloutEngine): RolloutEngine & { open(): void } {
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const gated = {
    generate: async (request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> => {
      await gate;
      return engine.generate(request, signal);
    },
    status: () => engine.status(),
    kvCapacityTokens: () => engine.kvCapacityTokens(),
    open,
  };
  // The shard calls no other method of its engine.
  return gated as unknown as RolloutEngine & { open(): void };
}

/** An engine whose turns fail with `error` once `when()` resolves; says when its first turn started and when it failed. */
function failingEngine(error: Error, when: () => Promise<unknown>): RolloutEngine & { started: Promise<void>; failed: Promise<void> } {
  let markStarted: () => void = () => undefined;
  let markFailed: () => void = () => undefined;
  const engine = {
    started: new Promise<void>((resolve) => (markStarted = resolve)),
    failed: new Promise<void>((resolve) => (markFailed = resolve)),
    generate: async () => {
      markStarted();
      await when();
      markFailed();
      throw error;
    },
    status: () => Promise.resolve({ weightVersion: 0, resident: ['weights', 'kv_cache'], runningRequests: 0 }),
    kvCapacityTokens: () => Promise.resolve(undefined),
  };
  // The shard calls no other method of its engine.
  return engine as unknown as RolloutEngine & { started: Promise<void>; failed: Promise<void> };
}

/**
 * An engine that fails its first `failures` turns with `error` (an engine restarting: no answer or
 * a 503), then turns into `then` (a simulated engine); counts the failed turns.
 */
function flakyEngine(error: Error, failures: number, then?: RolloutEngine): RolloutEngine & { failed: number } {
  const engine = {
    failed: 0,
    generate: async (request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> => {
      if (engine.failed < failures || then === undefined) {
        engine.failed += 1;
        throw error;
      }
      return then.generate(request, signal);
    },
    status: () => Promise.resolve({ weightVersion: 0, resident: ['weights', 'kv_cache'], runningRequests: 0 }),
    kvCapacityTokens: () => then?.kvCapacityTokens() ?? Promise.resolve(undefined),
  };
  // The shard calls no other method of its engine.
  return engine as unknown as RolloutEngine & { failed: number };
}

function sample(id: number): SampleRecord {
  return { id, startVersion: 0, promptTokens: 50, turns: [], status: 'running', startedAtMs: Date.now() };
}

function shard(shardId: string, rank: number, sampleIds: number[]): ShardInput {
  // Simulated ms: at this time scale an hour is 0.36 s of real time, which a loaded machine can exceed.
  return { runId: RUN, shardId, rank, sampleIds, version: 0, maxTurns: 10, maxTokens: 10_000, environmentTimeoutMs: 1e12 };
}

/** An outcome with its id lists in order: a shard's samples end in whatever order their writes finish. */
function inIdOrder<T extends { completed: number[]; unfinished: number[] }>(outcome: T | undefined): T | undefined {
  if (outcome === undefined) return undefined;
  return { ...outcome, completed: [...outcome.completed].sort((a, b) => a - b), unfinished: [...outcome.unfinished].sort((a, b) => a - b) };
}

describe('runRolloutShards', () => {
  let dir: string;
  let store: FsTrajectoryStore;
  let activities: ReturnType<typeof createGpuNodeActivities>;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'timeshare-group-'));
    store = new FsTrajectoryStore(dir, RUN, { fsync: false });
    await store.createSamples([0, 1, 2, 3, 4, 5, 6].map(sample));
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** The node's activities over `engines` (by rank), with a heartbeat every `heartbeatIntervalMs`. */
  function nodeWith(engines: Map<number, RolloutEngine>, heartbeatIntervalMs = 60_000, memberRetryDelaysMs?: number[]): void {
    activities = createGpuNodeActivities({
      ...(memberRetryDelaysMs === undefined ? {} : { memberRetryDelaysMs }),
      node: 0,
      runId: RUN,
      engines,
      trainer: undefined,
      environment: new SimEnvironment({ workload, clock: clock(TIME_SCALE) }),
      store: () => store,
      weightsPath: (_run, version) => path.join(dir, `v${version}.json`),
      weightsDir: () => dir,
      timeScale: TIME_SCALE,
      heartbeatIntervalMs,
      now: () => Date.now(),
    });
  }

  const runGroup = (shards: ShardInput[], watch?: ActivityWatch) =>
    inActivity<ShardGroupResult>(() => activities.runRolloutShards({ runId: RUN, shards }), 'runRolloutShards', watch);
  const stop = (shardIds: string[]) => inActivity(() => activities.stopShards({ runId: RUN, shardIds }), 'stopShards').result;
  /** Whether `promise` has settled by now (after the pending I/O callbacks). */
  const settledYet = async (promise: Promise<unknown>): Promise<boolean> => {
    let settled = false;
    void promise.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    return settled;
  };

  it("runs every member's samples to completion and returns each member's result in the input's order, under one heartbeat", async () => {
    nodeWith(new Map([0, 1, 2].map((rank) => [rank, simEngine(rank, 1000 + rank)])), 1);
    const heartbeats: unknown[] = [];
    const shards = [shard('on-2', 2, [4, 5, 6]), shard('on-0', 0, [0]), shard('on-1', 1, [1, 2, 3])];
    const { results } = await runGroup(shards, { heartbeat: (details) => heartbeats.push(details) }).result;

    expect(results.map(inIdOrder)).toEqual([
      { shardId: 'on-2', completed: [4, 5, 6], unfinished: [], dropped: [], kvCapacityTokens: 1002 },
      { shardId: 'on-0', completed: [0], unfinished: [], dropped: [], kvCapacityTokens: 1000 },
      { shardId: 'on-1', completed: [1, 2, 3], unfinished: [], dropped: [], kvCapacityTokens: 1001 },
    ]);
    for (const record of await store.readSamples([0, 1, 2, 3, 4, 5, 6])) {
      expect(record.status).toBe('completed');
      expect(record.turns).toHaveLength(3);
    }
    // The group's heartbeat counts every member's samples; no member heartbeats on its own.
    expect(heartbeats[0]).toEqual({ shards: 3, completed: 0, dropped: 0, running: 7 });
    for (const details of heartbeats) expect(details).toMatchObject({ shards: 3 });
  });

  it('a direct stop of one member checkpoints it and answers with its outcome; its siblings go on and complete', async () => {
    const held = new HoldingEngine();
    const gated = gatedEngine(simEngine(1, 2048));
    nodeWith(new Map<number, RolloutEngine>([[0, held as unknown as RolloutEngine], [1, gated]]));
    const group = runGroup([shard('held', 0, [0, 1]), shard('gated', 1, [2, 3])]);
    await held.turnsStarted(2);

    const answer = await stop(['held']);
    expect(answer.stopped).toEqual(['held']);
    expect(answer.checkpointed).toEqual(['held']);
    expect(answer.outcomes?.map(inIdOrder)).toEqual([{ shardId: 'held', completed: [], unfinished: [0, 1], dropped: [] }]);
    for (const record of await store.readSamples([0, 1])) {
      expect(record).toMatchObject({ status: 'running', owner: 'held@1', partial: { turn: 0, tokens: ABORTED_TOKENS, rank: 0 } });
    }
    expect(await settledYet(group.result)).toBe(false); // the gated sibling still runs

    gated.open();
    const { results } = await group.result;
    expect(results.map(inIdOrder)).toEqual([
      { shardId: 'held', completed: [], unfinished: [0, 1], dropped: [], kvCapacityTokens: 4096 },
      { shardId: 'gated', completed: [2, 3], unfinished: [], dropped: [], kvCapacityTokens: 2048 },
    ]);
    for (const record of await store.readSamples([2, 3])) expect(record.status).toBe('completed');
  });

  it('a member that completed while a sibling still runs is answered for by a later stop with the result it ended with', async () => {
    const held = new HoldingEngine();
    nodeWith(new Map<number, RolloutEngine>([[0, simEngine(0, 2048)], [1, held as unknown as RolloutEngine]]));
    const group = runGroup([shard('quick', 0, [0, 1]), shard('held', 1, [2])]);
    await held.turnsStarted(1);
    await expect.poll(async () => (await store.readSamples([0, 1])).map((record) => record.status), { timeout: 10_000 }).toEqual(['completed', 'completed']);

    // Not stopped (it had ended), answered for all the same: with its result, its engine's KV report included.
    await expect.poll(async () => (await stop(['quick'])).stopped).toEqual([]);
    const answer = await stop(['quick']);
    expect(answer.checkpointed).toEqual(['quick']);
    const quickResult: ShardResult = { shardId: 'quick', completed: [0, 1], unfinished: [], dropped: [], kvCapacityTokens: 2048 };
    expect(answer.outcomes?.map(inIdOrder)).toEqual([quickResult]);
    expect(await settledYet(group.result)).toBe(false);

    await stop(['held']);
    const { results } = await group.result;
    expect(results.map(inIdOrder)).toEqual([quickResult, { shardId: 'held', completed: [], unfinished: [2], dropped: [], kvCapacityTokens: 4096 }]);
    // Once the group has returned, its result answers for its members: the worker keeps no outcome of them.
    expect(await stop(['quick', 'held'])).toEqual({ stopped: [], checkpointed: [], outcomes: [] });
  });

  it("a sample's failure stops the other samples of its shard, each checkpointed, before the shard fails", async () => {
    const held = new HoldingEngine();
    const crash = new Error('sample 2 could not be generated');
    const engine = {
      generate: async (request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> => {
        if (request.sampleId !== 2) return held.generate(request, signal);
        await held.turnsStarted(2);
        throw crash;
      },
      status: () => held.status(),
      kvCapacityTokens: () => held.kvCapacityTokens(),
    } as unknown as RolloutEngine;
    nodeWith(new Map([[0, engine]]));
    const alone = inActivity<ShardResult>(() => activities.runRolloutShard(shard('alone', 0, [0, 1, 2])));

    await expect(alone.result).rejects.toBe(crash);
    // Not left generating: both held turns were aborted and checkpointed before the shard failed.
    expect((await store.readSamples([0, 1, 2])).map((record) => [record.id, record.status, record.owner, record.partial?.tokens])).toEqual([
      [0, 'running', 'alone@1', ABORTED_TOKENS],
      [1, 'running', 'alone@1', ABORTED_TOKENS],
      [2, 'running', 'alone@1', undefined],
    ]);
  });

  it("a member's failure stops its siblings, each checkpointing its samples, and fails the group with that very error", async () => {
    const heldA = new HoldingEngine();
    const heldB = new HoldingEngine();
    const crash = new Error('rank 1 engine crashed');
    nodeWith(
      new Map<number, RolloutEngine>([
        [0, heldA as unknown as RolloutEngine],
        [1, failingEngine(crash, () => Promise.all([heldA.turnsStarted(2), heldB.turnsStarted(1)]))],
        [2, heldB as unknown as RolloutEngine],
      ]),
    );
    const group = runGroup([shard('held-a', 0, [0, 1]), shard('failing', 1, [2]), shard('held-b', 2, [3])]);

    await expect(group.result).rejects.toBe(crash);
    // None lost: the siblings' turns are checkpointed, the failed member's sample is still live for a retry.
    const records = await store.readSamples([0, 1, 2, 3]);
    expect(records.map((record) => [record.id, record.status, record.owner, record.partial?.tokens])).toEqual([
      [0, 'running', 'held-a@1', ABORTED_TOKENS],
      [1, 'running', 'held-a@1', ABORTED_TOKENS],
      [2, 'running', 'failing@1', undefined],
      [3, 'running', 'held-b@1', ABORTED_TOKENS],
    ]);
    // Temporal runs the group again: a stop leaves its members to the cancellation request.
    expect(await stop(['held-a', 'failing', 'held-b'])).toEqual({ stopped: [], checkpointed: [], outcomes: [] });
  });

  it("fails with the first member's error when several fail, and logs the others with their shard", async () => {
    const held = new HoldingEngine();
    const first = new Error('rank 1 engine crashed');
    const second = new Error('rank 2 engine crashed');
    // The second fails after the first, its turn under way when the first failure stops it.
    const failsSecond: RolloutEngine & { started: Promise<void> } = failingEngine(second, () => failsFirst.failed.then(() => new Promise((resolve) => setTimeout(resolve, 10))));
    const failsFirst = failingEngine(first, () => Promise.all([held.turnsStarted(1), failsSecond.started]));
    nodeWith(
      new Map<number, RolloutEngine>([
        [0, held as unknown as RolloutEngine],
        [1, failsFirst],
        [2, failsSecond],
      ]),
    );
    const warnings: string[] = [];
    const group = runGroup([shard('held', 0, [0]), shard('failing-1', 1, [1]), shard('failing-2', 2, [2])], { warn: (message) => warnings.push(message) });

    await expect(group.result).rejects.toBe(first);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^shard failing-1 failed, and with it its group \(3 shards; its other members stopped and checkpointed\): rank 1 engine crashed$/);
    expect(warnings[1]).toMatch(/^shard failing-2 of a group failed too \(the group fails with shard failing-1's error\): rank 2 engine crashed$/);
    expect((await store.readSamples([0]))[0]).toMatchObject({ status: 'running', owner: 'held@1', partial: { tokens: ABORTED_TOKENS } });
  });

  it('a member whose engine fails as a restarting one does runs again alone after a wait; its sibling is not stopped; the group completes', async () => {
    const held = new HoldingEngine();
    const restarting = flakyEngine(new EngineHttpError('POST http://rank-1/generate', 503, 'engine restarting'), 2, simEngine(1, 2048));
    nodeWith(new Map<number, RolloutEngine>([[0, held as unknown as RolloutEngine], [1, restarting]]), 60_000, [20, 20, 20]);
    const warnings: string[] = [];
    const group = runGroup([shard('held', 0, [0, 1]), shard('restarting', 1, [2])], { warn: (message) => warnings.push(message) });
    await held.turnsStarted(2);
    // The restarting member runs its sample to its end after two failed turns (a final state, waited
    // for; a group that ended meanwhile, failed, ends the wait too).
    let groupEnded = false;
    group.result.then(
      () => (groupEnded = true),
      () => (groupEnded = true),
    );
    while (!groupEnded && (await store.readSamples([2]))[0]?.status !== 'completed') await new Promise((resolve) => setTimeout(resolve, 10));
    expect(restarting.failed).toBe(2);
    expect(await settledYet(group.result)).toBe(false);
    // Its sibling's turns were never cut: started once each, nothing checkpointed yet.
    expect(held.started).toHaveLength(2);
    for (const record of await store.readSamples([0, 1])) expect(record.partial).toBeUndefined();

    expect((await stop(['held'])).outcomes?.map(inIdOrder)).toEqual([{ shardId: 'held', completed: [], unfinished: [0, 1], dropped: [] }]);
    const { results } = await group.result;
    expect(results.map(inIdOrder)).toEqual([
      { shardId: 'held', completed: [], unfinished: [0, 1], dropped: [], kvCapacityTokens: 4096 },
      { shardId: 'restarting', completed: [2], unfinished: [], dropped: [], kvCapacityTokens: 2048 },
    ]);
    // Each run claimed under an owner of its own: the second run again completed it.
    const [completed] = await store.readSamples([2]);
    expect(completed).toMatchObject({ status: 'completed', owner: 'restarting@1.2' });
    // Its turns once each: the failed turns left nothing behind.
    expect(completed?.turns.map((turn) => turn.turn)).toEqual([0, 1, 2]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toBe(
      'shard restarting on rank 1: its engine failed (POST http://rank-1/generate: HTTP 503: engine restarting); its samples are checkpointed and it runs again alone in 20 ms (retry 1 of 3), while the other shards of its group go on',
    );
    expect(warnings[1]).toContain('(retry 2 of 3)');
  });

  it('a stop while a member waits to run again answers at once with its samples as checkpointed; its sibling goes on', { timeout: 30_000 }, async () => {
    const held = new HoldingEngine();
    // Down for good; its wait (a minute) outlasts this test's time limit: the stop must not wait it out.
    const down = flakyEngine(new EngineHttpError('POST http://rank-1/generate', undefined, 'connect ECONNREFUSED'), Number.POSITIVE_INFINITY);
    nodeWith(new Map<number, RolloutEngine>([[0, held as unknown as RolloutEngine], [1, down]]), 60_000, [60_000]);
    let waiting: () => void = () => undefined;
    const waits = new Promise<void>((resolve) => (waiting = resolve));
    const group = runGroup([shard('held', 0, [0, 1]), shard('down', 1, [2, 3])], { warn: () => waiting() });
    await Promise.all([held.turnsStarted(2), waits]);

    const answer = await stop(['down']);
    expect(answer.stopped).toEqual(['down']);
    expect(answer.outcomes?.map(inIdOrder)).toEqual([{ shardId: 'down', completed: [], unfinished: [2, 3], dropped: [] }]);
    // Its samples as the failed run left them, and no run of theirs since: the engine was asked nothing more.
    const failedTurns = down.failed;
    for (const record of await store.readSamples([2, 3])) expect(record).toMatchObject({ status: 'running', owner: 'down@1', turns: [] });
    expect(await settledYet(group.result)).toBe(false);
    expect(held.started).toHaveLength(2);

    await stop(['held']);
    const { results } = await group.result;
    expect(results.map((result) => [result.shardId, [...result.unfinished].sort()])).toEqual([
      ['held', [0, 1]],
      ['down', [2, 3]],
    ]);
    expect(down.failed).toBe(failedTurns);
  });

  it('a stop while a member waits answers with what its failed run completed and what it left unfinished', { timeout: 30_000 }, async () => {
    const held = new HoldingEngine();
    const sim = simEngine(1, 2048);
    // Sample 2 runs to its end; sample 3's turn fails (no answer) once sample 2 has completed.
    const engine = {
      generate: async (request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> => {
        if (request.sampleId === 2) return sim.generate(request, signal);
        while ((await store.readSamples([2]))[0]?.status !== 'completed') await new Promise((resolve) => setTimeout(resolve, 5));
        throw new EngineHttpError('POST http://rank-1/generate', undefined, 'connect ECONNREFUSED');
      },
      status: () => sim.status(),
      kvCapacityTokens: () => sim.kvCapacityTokens(),
    } as unknown as RolloutEngine;
    nodeWith(new Map<number, RolloutEngine>([[0, held as unknown as RolloutEngine], [1, engine]]), 60_000, [60_000]);
    let waiting: () => void = () => undefined;
    const waits = new Promise<void>((resolve) => (waiting = resolve));
    const group = runGroup([shard('held', 0, [0, 1]), shard('half', 1, [2, 3])], { warn: () => waiting() });
    await Promise.all([held.turnsStarted(2), waits]);

    expect((await stop(['half'])).outcomes?.map(inIdOrder)).toEqual([{ shardId: 'half', completed: [2], unfinished: [3], dropped: [] }]);
    await stop(['held']);
    expect((await group.result).results.map(inIdOrder)).toEqual([
      { shardId: 'held', completed: [], unfinished: [0, 1], dropped: [], kvCapacityTokens: 4096 },
      { shardId: 'half', completed: [2], unfinished: [3], dropped: [], kvCapacityTokens: 2048 },
    ]);
  });

  it('a stop that comes while a run again brings its engine up answers for the member instead of failing the group', { timeout: 30_000 }, async () => {
    const held = new HoldingEngine();
    // The engine does not answer: its turns fail at once; its status, after the first, hangs until let go, then fails.
    let statusReads = 0;
    let secondRead: () => void = () => undefined;
    const secondReadStarted = new Promise<void>((resolve) => (secondRead = resolve));
    let letGo: () => void = () => undefined;
    const gone = new Promise<void>((resolve) => (letGo = resolve));
    const engine = {
      generate: () => Promise.reject(new EngineHttpError('POST http://rank-1/generate', undefined, 'connect ECONNREFUSED')),
      status: async () => {
        statusReads += 1;
        if (statusReads === 1) return { weightVersion: 0, resident: ['weights', 'kv_cache'], runningRequests: 0 };
        secondRead();
        await gone;
        throw new EngineHttpError('GET http://rank-1/model_info', undefined, 'connect ECONNREFUSED');
      },
      kvCapacityTokens: () => Promise.resolve(undefined),
    } as unknown as RolloutEngine;
    nodeWith(new Map<number, RolloutEngine>([[0, held as unknown as RolloutEngine], [1, engine]]), 60_000, [10, 10]);
    const group = runGroup([shard('held', 0, [0, 1]), shard('down', 1, [2])]);
    await Promise.all([held.turnsStarted(2), secondReadStarted]);

    const answer = stop(['down']);
    letGo();
    expect((await answer).outcomes?.map(inIdOrder)).toEqual([{ shardId: 'down', completed: [], unfinished: [2], dropped: [] }]);
    // Claimed by the run again before its catch-up failed: its claim had ended before the answer.
    expect((await store.readSamples([2]))[0]).toMatchObject({ status: 'running', owner: 'down@1.1', turns: [] });
    await stop(['held']);
    expect((await group.result).results.map((result) => [result.shardId, [...result.unfinished].sort()])).toEqual([
      ['held', [0, 1]],
      ['down', [2]],
    ]);
  });

  it('a run again does not take back samples a newer attempt of its shard has claimed: the member fails fenced out', async () => {
    const held = new HoldingEngine();
    const down = flakyEngine(new EngineHttpError('POST http://rank-1/generate', 503, 'engine restarting'), Number.POSITIVE_INFINITY);
    nodeWith(new Map<number, RolloutEngine>([[0, held as unknown as RolloutEngine], [1, down]]), 60_000, [300, 300]);
    // While the member waits, a newer attempt of the shard (Temporal's retry elsewhere) claims its sample.
    let taken: Promise<void> = Promise.resolve();
    const group = runGroup([shard('held', 0, [0, 1]), shard('down', 1, [2])], { warn: () => (taken = store.claim([2], 'down@2')) });

    const error = await group.result.catch((e: unknown) => e);
    await taken;
    expect(String(error)).toMatch(/shard "down@1\.\d" may not write sample 2 .*owner is "down@2"/);
    expect((await store.readSamples([2]))[0]?.owner).toBe('down@2');
    // Its sibling stopped with the group's failure, each turn checkpointed.
    for (const record of await store.readSamples([0, 1])) expect(record).toMatchObject({ owner: 'held@1', partial: { tokens: ABORTED_TOKENS } });
  });

  it('a failure no run again can fix, even behind one it could, fails the group with the first in time; the others are logged', async () => {
    const held = new HoldingEngine();
    // Sample 3 meets a protocol error at once; sample 2, stopped by it, gets no answer to its abort.
    const engine = {
      generate: (request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> => {
        if (request.sampleId === 3) return Promise.reject(new EngineProtocolError('POST http://rank-1/generate', 'malformed answer'));
        return new Promise((_, reject) => signal?.addEventListener('abort', () => reject(new EngineHttpError('POST http://rank-1/generate', undefined, 'no answer after abort')), { once: true }));
      },
      status: () => held.status(),
      kvCapacityTokens: () => held.kvCapacityTokens(),
    } as unknown as RolloutEngine;
    nodeWith(new Map<number, RolloutEngine>([[0, held as unknown as RolloutEngine], [1, engine]]), 60_000, [10]);
    const warnings: string[] = [];
    const group = runGroup([shard('held', 0, [0, 1]), shard('mixed', 1, [2, 3])], { warn: (message) => warnings.push(message) });

    const error = await group.result.catch((e: unknown) => e);
    expect(String(error)).toContain('malformed answer');
    expect(warnings.some((line) => line.includes('runs again'))).toBe(false);
    expect(warnings).toContain('shard mixed on rank 1: 1 more of its samples failed after the first: POST http://rank-1/generate: no response: no answer after abort');
  });

  it('past its last wait the member fails the group and its siblings stop, as any failure; a lone shard is left to Temporal at once', async () => {
    const held = new HoldingEngine();
    const error = new EngineHttpError('POST http://rank-1/generate', 503, 'engine restarting');
    const down = flakyEngine(error, Number.POSITIVE_INFINITY);
    nodeWith(new Map<number, RolloutEngine>([[0, held as unknown as RolloutEngine], [1, down]]), 60_000, [10]);
    const group = runGroup([shard('held', 0, [0, 1]), shard('down', 1, [2])]);

    await expect(group.result).rejects.toBe(error);
    // One run, one run again, then the group's failure: its sibling checkpointed its turns.
    expect(down.failed).toBe(2);
    for (const record of await store.readSamples([0, 1])) expect(record).toMatchObject({ status: 'running', owner: 'held@1', partial: { tokens: ABORTED_TOKENS } });
    expect((await store.readSamples([2]))[0]).toMatchObject({ status: 'running', owner: 'down@1.1', turns: [] });

    // Alone there is no sibling to go on: the shard fails at its first failed turn, for Temporal to retry.
    const alone = inActivity<ShardResult>(() => activities.runRolloutShard(shard('alone', 1, [4])));
    await expect(alone.result).rejects.toBe(error);
    expect(down.failed).toBe(3);
  });

  it("the group's cancellation by its workflow checkpoints every member and ends the activity cancelled; a later stop answers for each", async () => {
    const heldA = new HoldingEngine();
    const heldB = new HoldingEngine();
    nodeWith(new Map<number, RolloutEngine>([[0, heldA as unknown as RolloutEngine], [1, heldB as unknown as RolloutEngine]]));
    const group = runGroup([shard('held-a', 0, [0, 1]), shard('held-b', 1, [2])]);
    await Promise.all([heldA.turnsStarted(2), heldB.turnsStarted(1)]);

    group.cancel('CANCELLED');
    await expect(group.result).rejects.toBeInstanceOf(CancelledFailure);
    for (const record of await store.readSamples([0, 1, 2])) {
      expect(record.status).toBe('running');
      expect(record.partial?.tokens).toBe(ABORTED_TOKENS);
    }
    const answer = await stop(['held-a', 'held-b']);
    expect(answer.stopped).toEqual([]);
    expect(answer.checkpointed).toEqual(['held-a', 'held-b']);
    expect(answer.outcomes?.map(inIdOrder)).toEqual([
      { shardId: 'held-a', completed: [], unfinished: [0, 1], dropped: [], kvCapacityTokens: 4096 },
      { shardId: 'held-b', completed: [], unfinished: [2], dropped: [], kvCapacityTokens: 4096 },
    ]);
  });

  it("a cancellation that is not its workflow's (a timeout) leaves the members to a retry: a stop answers for none, not even one that had completed", async () => {
    const held = new HoldingEngine();
    nodeWith(new Map<number, RolloutEngine>([[0, simEngine(0, 2048)], [1, held as unknown as RolloutEngine]]));
    const group = runGroup([shard('quick', 0, [0]), shard('held', 1, [2])]);
    await held.turnsStarted(1);
    await expect.poll(async () => (await stop(['quick'])).checkpointed, { timeout: 10_000 }).toEqual(['quick']);

    group.cancel('TIMED_OUT');
    await expect(group.result).rejects.toBeInstanceOf(CancelledFailure);
    expect(await stop(['quick', 'held'])).toEqual({ stopped: [], checkpointed: [], outcomes: [] });
  });

  it('refuses a group that is empty, names a shard twice, mixes runs or has a shard on a rank of another node, before claiming anything', async () => {
    nodeWith(new Map([[0, simEngine(0, 2048)]]));
    const refusal = (input: ShardGroupInput) => inActivity(() => activities.runRolloutShards(input), 'runRolloutShards').result.catch((error: unknown) => error);
    const cases: [ShardGroupInput, string, RegExp][] = [
      [{ runId: RUN, shards: [] }, 'ValidationError', /shards of the group: must not be empty/],
      [{ runId: RUN, shards: [shard('twice', 0, [0]), shard('twice', 0, [1])] }, 'ValidationError', /shard ids of the group: duplicates found.*twice/],
      [{ runId: RUN, shards: [shard('ours', 0, [0]), { ...shard('theirs', 0, [1]), runId: 'other-run' }] }, 'ValidationError', /other-run/],
      [{ runId: RUN, shards: [shard('ours', 0, [0]), shard('elsewhere', 5, [1])] }, 'WrongNode', /rank 5 is not served by gpu-node 0/],
      [{ runId: 'other-run', shards: [] }, 'WrongRun', /got an activity of run 'other-run'/],
    ];
    for (const [input, type, message] of cases) {
      const error = await refusal(input);
      expect(error).toBeInstanceOf(ApplicationFailure);
      expect((error as ApplicationFailure).type).toBe(type);
      expect((error as ApplicationFailure).nonRetryable).toBe(true);
      expect((error as ApplicationFailure).message).toMatch(message);
    }
    for (const record of await store.readSamples([0, 1])) expect(record.owner).toBeUndefined();
  });
});
