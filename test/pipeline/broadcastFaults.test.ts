/**
 * Faults during weight sync by broadcast, against real processes: the reference RL run with
 * broadcast sync (examples/reference-rl-broadcast.yaml: two reference engine processes, the
 * reference trainer process, a gloo collective on loopback, a real Temporal dev server). An
 * engine, then the trainer, is SIGKILLed while a broadcast is in flight (the trainer sleeps
 * between buckets, so the transfer is held open for seconds and the kill lands inside it), and
 * started again on its port. The collective fails, the group is torn down, and once every member
 * answers again it is rebuilt with the restarted member and the sync retried; every engine ends
 * on the run's last version, and the store's audit finds every sample exactly once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';
import { REFERENCE_RL_BROADCAST_PRESET, runReferenceRl, type DuringRun } from '../helpers/referenceRl';

const ITERATIONS = 3;

interface ModelInfo {
  weight_version: string;
  weight_update: { groups: string[]; staging: Record<string, { tensors: number; of: number }> };
}

/** Waits (polling every 50 ms) until engine `index` has received part of a version, not all of it. */
async function midBroadcast(run: DuringRun, index: number, atLeastIteration: number): Promise<void> {
  for (;;) {
    const status = (await run.handle.query('status')) as { iteration: number };
    if (status.iteration >= atLeastIteration) {
      const info = (await (await fetch(`${run.engines[index]!.url}/model_info`)).json()) as ModelInfo;
      if (Object.values(info.weight_update.staging).some((staged) => staged.tensors > 0 && staged.tensors < staged.of)) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('weight sync by broadcast survives a member killed mid-broadcast (real processes)', () => {
  let env: PipelineEnv;
  let checkpoints: string;
  beforeAll(async () => {
    env = await startPipelineEnv();
    checkpoints = mkdtempSync(path.join(os.tmpdir(), 'timeshare-trainer-ckpt-'));
  });
  afterAll(async () => {
    await env?.close();
    rmSync(checkpoints, { recursive: true, force: true });
  });

  const common = (runId: string) => ({
    runId,
    iterations: ITERATIONS,
    batchSize: 8,
    preset: REFERENCE_RL_BROADCAST_PRESET,
    // Small buckets and a pause between them hold each broadcast open for seconds.
    weightSync: { bucketMiB: 0.01, attempts: 8, timeoutSeconds: 60 },
    // Engine start takes long on a loaded machine; the group's own timeout bounds a stuck member.
    engineOptions: { startTimeoutMs: 300_000, weightSyncTimeoutS: 30 },
  });

  const expectRecovered = (result: Awaited<ReturnType<typeof runReferenceRl>>) => {
    expect(result.summary.iterations).toBe(ITERATIONS);
    expect(result.summary.version).toBe(ITERATIONS);
    // Every engine ends on the same, last version.
    expect(result.engineVersions).toEqual([ITERATIONS, ITERATIONS]);
    // The group was rebuilt once: the run's first group, then one formed when every member
    // answered again (a formation begun while the killed member was still starting would time
    // out and need a third).
    expect(result.groupsOpened).toBe(2);
    // No sample lost or duplicated.
    expect(result.audit.violations).toEqual([]);
    expect(result.audit.batched).toBe(ITERATIONS * 8);
    // No fallback to files happened (fallback: none).
    expect(result.exportedVersions).toEqual([]);
  };

  it('kill a rollout engine mid-broadcast: the group is rebuilt with the restarted engine', { timeout: 600_000 }, async () => {
    let killedAt: string | undefined;
    const result = await runReferenceRl(env, {
      ...common('broadcast-kill-engine'),
      trainerOptions: { broadcastDelayMs: 300, checkpointDir: path.join(checkpoints, 'engine-kill') },
      during: async (run) => {
        await midBroadcast(run, 1, 1);
        killedAt = JSON.stringify(await run.handle.query('status'));
        await run.kill(1);
        await run.restart(1);
      },
    });
    console.log(`killed mid-broadcast at ${killedAt}`);
    expectRecovered(result);
  });

  it('kill the trainer mid-broadcast: it restarts from its checkpoint and the sync completes', { timeout: 600_000 }, async () => {
    let killedAt: string | undefined;
    const result = await runReferenceRl(env, {
      ...common('broadcast-kill-trainer'),
      trainerOptions: { broadcastDelayMs: 300, checkpointDir: path.join(checkpoints, 'trainer-kill') },
      during: async (run) => {
        await midBroadcast(run, 0, 1);
        killedAt = JSON.stringify(await run.handle.query('status'));
        await run.kill(2);
        await run.restart(2);
      },
    });
    console.log(`killed mid-broadcast at ${killedAt}`);
    expectRecovered(result);
  });
});
