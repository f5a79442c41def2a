/**
 * A rollout shard on an engine that restarted since its rank's last sync (it serves older weights
 * than the shard's version) loads the run's exported weights of that version before its turns;
 * without exported weights its turns record the version the engine serves, and its result says so.
 * A released rank's reload (no shard meets its engine) reports the version each engine serves. The
 * simulated engine and environment, a real store; the activity in a context of our own.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createGpuNodeActivities } from '../../src/activities/gpuNode';
import type { ShardInput, ShardResult } from '../../src/contract/types';
import { SimEnvironment } from '../../src/engines/simulated/environment';
import { SimRolloutEngine } from '../../src/engines/simulated/rolloutEngine';
import { FsTrajectoryStore, type SampleRecord } from '../../src/store';
import { clock, constantWorkload, cost, memory } from '../engines/helpers';
import { inActivity } from '../helpers/activityContext';

const RUN = 'run-catch-up';
const TIME_SCALE = 0.0001;
const workload = constantWorkload(20, { turns: { median: 3, p90: 3 }, envStepMs: { median: 10, p90: 10 } });

describe('a shard on an engine behind its version', () => {
  let dir: string;
  let store: FsTrajectoryStore;
  let engine: SimRolloutEngine;
  let activities: ReturnType<typeof createGpuNodeActivities>;
  const weightsPath = (version: number): string => path.join(dir, `v${version}.json`);
  const shard = (version: number, sampleIds: number[]): ShardInput => ({
    runId: RUN,
    shardId: `s-v${version}`,
    rank: 0,
    sampleIds,
    version,
    maxTurns: 10,
    maxTokens: 10_000,
    // Simulated ms: at this time scale an hour is 0.36 s of real time, which a loaded machine can exceed.
    environmentTimeoutMs: 1e12,
  });
  const sample = (id: number): SampleRecord => ({ id, startVersion: 2, promptTokens: 50, turns: [], status: 'running', startedAtMs: Date.now() });

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'timeshare-catch-up-'));
    store = new FsTrajectoryStore(dir, RUN, { fsync: false });
    await store.admitSamples([0, 1].map(sample));
    // A fresh engine serves v0: an engine restarted with its base weights.
    engine = new SimRolloutEngine({ rank: 0, gpus: [0], cost: cost(), workload, clock: clock(TIME_SCALE), memory: memory([0]) });
    activities = createGpuNodeActivities({
      node: 0,
      runId: RUN,
      engines: new Map([[0, engine]]),
      trainer: undefined,
      environment: new SimEnvironment({ workload, clock: clock(TIME_SCALE) }),
      store: () => store,
      weightsPath: (_run, version) => weightsPath(version),
      weightsDir: () => dir,
      timeScale: TIME_SCALE,
      heartbeatIntervalMs: 60_000,
      now: () => Date.now(),
    });
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const turnVersions = async (): Promise<number[]> => (await store.readSamples([0, 1])).flatMap((record) => record.turns.map((turn) => turn.weightVersion));

  it("loads the run's exported weights of the shard's version before its turns", async () => {
    writeFileSync(weightsPath(2), JSON.stringify({ version: 2 }));
    const result = await inActivity<ShardResult>(() => activities.runRolloutShard(shard(2, [0, 1]))).result;
    expect(result).toMatchObject({ unfinished: [], dropped: [] });
    expect([...result.completed].sort()).toEqual([0, 1]);
    expect((await engine.status()).weightVersion).toBe(2);
    // Reported all the same: a restarted engine is in no weight group the run kept.
    expect(result.engineBehind).toBe(0);
    const versions = await turnVersions();
    expect(versions).toHaveLength(6);
    expect(new Set(versions)).toEqual(new Set([2]));
  });

  it('without exported weights of that version, its turns record the version the engine serves', async () => {
    const result = await inActivity<ShardResult>(() => activities.runRolloutShard(shard(2, [0, 1]))).result;
    expect(result).toMatchObject({ unfinished: [], dropped: [] });
    expect([...result.completed].sort()).toEqual([0, 1]);
    expect((await engine.status()).weightVersion).toBe(0);
    expect(new Set(await turnVersions())).toEqual(new Set([0]));
    expect(result.engineBehind).toBe(0);
  });

  it('an engine at the shard\'s version or after it loads nothing', async () => {
    writeFileSync(weightsPath(1), JSON.stringify({ version: 1 }));
    await engine.updateWeights(1, weightsPath(1));
    // A weights file that would fail to load if the shard tried: the engine must not read it.
    writeFileSync(weightsPath(0), 'not json');
    const result = await inActivity<ShardResult>(() => activities.runRolloutShard({ ...shard(0, [0, 1]), shardId: 's-v0' })).result;
    expect(result).toMatchObject({ unfinished: [], dropped: [] });
    expect([...result.completed].sort()).toEqual([0, 1]);
    expect((await engine.status()).weightVersion).toBe(1);
    expect(result.engineBehind).toBeUndefined();
  });

  it("a released rank's reload reports the version its engine serves: a restarted one serves its base weights", async () => {
    writeFileSync(weightsPath(2), JSON.stringify({ version: 2 }));
    await engine.updateWeights(2, weightsPath(2));
    await engine.releaseMemory(['weights', 'kv_cache']);
    const resume = () => inActivity(() => activities.resumeNodeMemory({ runId: RUN, ranks: [0], tags: ['weights'] })).result;
    expect(await resume()).toEqual({ ranks: [0], tags: ['weights'], state: 'resident', served: [{ rank: 0, weightVersion: 2 }] });
    await engine.releaseMemory(['weights']);
    engine.restart();
    expect(await resume()).toEqual({ ranks: [0], tags: ['weights'], state: 'resident', served: [{ rank: 0, weightVersion: 0 }] });
  });
});
