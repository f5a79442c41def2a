/**
 * Engines restarted between two syncs by broadcast, through the real pipeline (a real dev server,
 * the real workers, simulated engines, weight sync by broadcast). The run is held paused after
 * iteration 0, whose sync formed the weight group the run keeps; then every rollout engine loses
 * its state (its weights version and its group membership, as a restarted engine process does)
 * and the workers start again. In iteration 1 the shards find their engines behind their version
 * with no exported weights to load, so their turns record the version served (v0), and the sync
 * forms a new group instead of sending into the kept one: one broadcast, not a failed one and a
 * second. Every engine ends on the run's last version; every sample is in the store once.
 *
 * Every engine, not one: a rank may run no shard in an iteration (a batch complete at its start
 * launches none on the released ranks), and only a shard finds its engine restarted.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFaultInjection } from '../../src/config/small';
import { iterationWorkflowId } from '../../src/contract/naming';
import { firedFaults, injectFault } from '../../src/engines/simulated/injection';
import type { RunStatus } from '../../src/contract/types';
import { SimRolloutEngine } from '../../src/engines/simulated/rolloutEngine';
import { engineStateDir, faultInjectionDir } from '../../src/workers/runtime';
import type { RunSummary } from '../../src/workflows/run';
import type { WorkflowHandle } from '@temporalio/client';
import { scheduledActivityTypes } from '../helpers/historyEvents';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';
import { clock, constantWorkload, cost, memory } from '../engines/helpers';

const ITERATIONS = 3;
const RANKS = 4;

/** Holds the run at a known point after iteration 0: paused before iteration 1 starts. */
async function pauseBeforeIteration1(handle: WorkflowHandle): Promise<void> {
  const status = () => handle.query<RunStatus>('status');
  await handle.executeUpdate('pause');
  for (let current = await status(); !(current.paused && current.iteration === 1); current = await status()) {
    if (current.paused && current.iteration === 0) {
      await handle.executeUpdate('resume');
      await handle.executeUpdate('pause');
    }
    if (current.lastError !== undefined) throw new Error(`iteration 0 failed: ${current.lastError}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Every engine's weight version, read from the state it persisted (its workers stopped). */
async function engineVersions(stateDir: string): Promise<number[]> {
  const versions: number[] = [];
  for (let rank = 0; rank < RANKS; rank++) {
    const engine = new SimRolloutEngine({ rank, gpus: [rank], cost: cost(), workload: constantWorkload(10), clock: clock(1), memory: memory(), statePath: path.join(stateDir, `rank-${rank}.json`) });
    versions.push((await engine.status()).weightVersion);
  }
  return versions;
}

describe('engines restarted between syncs by broadcast (real Temporal)', () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('its shards record the version it serves, and the next sync forms a new weight group instead of sending into the kept one', async () => {
    const runId = 'restarted-engine';
    const context = env.context({
      ...smallConfig({ run: { id: runId, iterations: ITERATIONS } }),
      engine: { weightSync: { mode: 'broadcast', timeoutSeconds: 20, attempts: 4 } },
    });
    let workers = await env.startWorkers(context);
    let stopped = false;
    try {
      const { handle } = await env.startRun(context);
      await pauseBeforeIteration1(handle);
      await workers.stop();
      const stateDir = engineStateDir(context.paths, runId);
      for (let rank = 0; rank < RANKS; rank++) rmSync(path.join(stateDir, `rank-${rank}.json`));
      workers = await env.startWorkers(context);
      await handle.executeUpdate('resume');
      const summary = (await handle.result()) as RunSummary;
      expect(summary.iterations).toBe(ITERATIONS);

      const history = await env.client.workflow.getHandle(iterationWorkflowId(runId, 1)).fetchHistory();
      const types = scheduledActivityTypes(history);
      // Shards ran before the sync (they find the engines restarted); then one broadcast, into a
      // group formed after the kept one was torn down.
      expect(types.indexOf('runRolloutShards')).toBeGreaterThanOrEqual(0);
      expect(types.indexOf('runRolloutShards')).toBeLessThan(types.indexOf('closeWeightGroup'));
      expect(types.filter((type) => type === 'broadcastWeights')).toHaveLength(1);
      expect(types.indexOf('closeWeightGroup')).toBeGreaterThanOrEqual(0);
      expect(types.indexOf('closeWeightGroup')).toBeLessThan(types.indexOf('openWeightGroup'));
      const failed = (history.events ?? []).filter((event) => event.activityTaskFailedEventAttributes !== undefined && event.activityTaskFailedEventAttributes !== null);
      expect(failed).toEqual([]);

      // The restarted engines' turns in iteration 1 record the version they served (v0): no turn
      // of v1 (served only between iteration 0's sync and the restart, while the run was paused).
      const store = env.store(context);
      const samples = await store.readSamples(await store.listSampleIds());
      const versions = new Set(samples.flatMap((sample) => sample.turns.map((turn) => turn.weightVersion)));
      expect(versions.has(0)).toBe(true);
      expect(versions.has(1)).toBe(false);
      const audit = await store.audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(ITERATIONS * 8);

      // Every engine ends on the last version (read from the state it persisted).
      await workers.stop();
      stopped = true;
      expect(await engineVersions(stateDir)).toEqual(Array.from({ length: RANKS }, () => ITERATIONS));
    } finally {
      if (!stopped) await workers.stop();
    }
  }, 600_000);

  // A released rank runs no shard from the shrink to the sync, so no shard can find its engine
  // restarted: the sync's reload of its weights does, before the trainer sends.
  it('an engine restarted while its rank was released: the reload before the sync finds it, and the sync forms a new group', async () => {
    const runId = 'restarted-while-released';
    const context = env.context(
      withFaultInjection({
        ...smallConfig({ run: { id: runId, iterations: ITERATIONS } }),
        engine: { weightSync: { mode: 'broadcast', timeoutSeconds: 20, attempts: 4 } },
      }),
    );
    const released = env.spec(context).layout.shrinkRanks;
    expect(released.length).toBeGreaterThan(0);
    const victim = released.at(-1)!;
    const workers = await env.startWorkers(context);
    let stopped = false;
    try {
      const { handle } = await env.startRun(context);
      await pauseBeforeIteration1(handle);
      // The engine's process restarts (its worker stays up) just before iteration 1's sync reloads its weights.
      const faults = faultInjectionDir(context.paths, runId);
      const fault = injectFault(faults, { id: 'restart-released', target: 'rollout', operation: 'resumeMemory', tag: 'weights', kind: 'restart', at: victim });
      await handle.executeUpdate('resume');
      const summary = (await handle.result()) as RunSummary;
      expect(summary.iterations).toBe(ITERATIONS);
      expect(firedFaults(faults).has(fault.id)).toBe(true);

      const history = await env.client.workflow.getHandle(iterationWorkflowId(runId, 1)).fetchHistory();
      const types = scheduledActivityTypes(history);
      // The reload found the engine behind, the kept group was torn down and a new one formed:
      // one broadcast, none failed.
      expect(types.indexOf('resumeNodeMemory')).toBeGreaterThanOrEqual(0);
      expect(types.indexOf('resumeNodeMemory')).toBeLessThan(types.indexOf('closeWeightGroup'));
      expect(types.indexOf('closeWeightGroup')).toBeLessThan(types.indexOf('openWeightGroup'));
      expect(types.filter((type) => type === 'broadcastWeights')).toHaveLength(1);
      const failed = (history.events ?? []).filter((event) => event.activityTaskFailedEventAttributes !== undefined && event.activityTaskFailedEventAttributes !== null);
      expect(failed).toEqual([]);

      const store = env.store(context);
      const audit = await store.audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(ITERATIONS * 8);
      await workers.stop();
      stopped = true;
      expect(await engineVersions(engineStateDir(context.paths, runId))).toEqual(Array.from({ length: RANKS }, () => ITERATIONS));
    } finally {
      if (!stopped) await workers.stop();
    }
  }, 600_000);
});
