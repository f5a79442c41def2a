/**
 * The admission's KV cap from the engines' own reports, through the real pipeline (a real dev
 * server, the real workers, simulated engines): the engines report a small KV capacity
 * (`simulation.costModel.kvCapacityTokensPerRank`) and the config sets no
 * `rollout.kvCapacityTokensPerRank`. The first iteration reads each rank's report at its start,
 * before its first admission, the rollout shards return it too, the run keeps them, and from the
 * first admission on (each sample counted as growing towards maxTokens until a batch is trained,
 * then from the trained contexts) fewer samples roll out at once than in the same run whose
 * engines report none; every sample is in the store exactly once either way.
 *
 * The bound is logical, not timed: after each admission the samples rolling out (not completed in
 * the store) are at most the cap, and between admissions they only finish. So the peak of samples
 * rolling at once, from the store's admission and completion times, is at most the largest cap the
 * admissions can have used, whatever the machine's load.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterationWorkflowId } from '../../src/contract/naming';
import { kvRunningCap, type TrainedContext } from '../../src/gpu';
import type { RunStatus } from '../../src/contract/types';
import type { FsTrajectoryStore } from '../../src/store';
import type { RunSummary } from '../../src/workflows/run';
import { completedBeforeScheduled, scheduledActivityTypes } from '../helpers/historyEvents';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';

const ITERATIONS = 4;
const BATCH = 16;
const RANKS = 4;
const KV_TOKENS = 4096;
function kvConfig(runId: string, engineKvTokens: number | undefined): Record<string, unknown> {
  const base = smallConfig();
  const simulation = base.simulation as Record<string, unknown>;
  return {
    ...base,
    run: { id: runId, iterations: ITERATIONS },
    batchSize: BATCH,
    maxTokens: KV_TOKENS,
    simulation: {
      ...simulation,
      // Long turns: most trajectories reach the token budget, so a rank's cache holds about two.
      workload: { ...(simulation.workload as Record<string, unknown>), completionTokensPerTurn: { median: 800, p90: 1600 } },
      ...(engineKvTokens === undefined ? {} : { costModel: { kvCapacityTokensPerRank: engineKvTokens } }),
    },
  };
}

interface RunFigures {
  status: RunStatus;
  /** Most samples rolling out at once (store times). */
  peakRolling: number;
  /** The largest KV cap the admissions can have used (from maxTokens and the batches' manifests). */
  largestCap: number;
  /** KV capacity reads (one activity per node) scheduled by iterations 0 and 1. */
  capacityReads: [number, number];
  /** Whether iteration 0's read had completed before its first shard (and the admission it launched) was scheduled. */
  readBeforeFirstShard: boolean;
}

/** Peak number of samples between admission and completion (or the end) at once, among `records`. */
function peakConcurrent(intervals: readonly { start: number; end: number }[]): number {
  const events = intervals.flatMap(({ start, end }) => [
    { at: start, delta: 1 },
    { at: end, delta: -1 },
  ]);
  // A completion and an admission at the same ms: the completion first (the admission saw it).
  events.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let now = 0;
  let peak = 0;
  for (const event of events) {
    now += event.delta;
    peak = Math.max(peak, now);
  }
  return peak;
}

/**
 * The largest KV cap of 'resume' in the run: before any batch is trained (from maxTokens), then as
 * the trained context grows batch by batch (each manifest's Σ L and Σ L²), with every rank rolling
 * out or the kept half.
 */
async function largestCap(store: FsTrajectoryStore): Promise<number> {
  const trained: TrainedContext = { samples: 0, tokens: 0, squaredTokens: 0 };
  let largest = 0;
  for (const ranks of [RANKS, RANKS / 2]) {
    largest = Math.max(largest, kvRunningCap({ kvCapacityTokens: ranks * KV_TOKENS, ranksRollingOut: ranks, trainedContext: undefined, maxContextTokens: KV_TOKENS }));
  }
  for (const iteration of await store.listBatches()) {
    const manifest = await store.readBatch(iteration);
    expect(manifest.totalTokensSquared).toBeDefined();
    trained.samples += manifest.sampleIds.length;
    trained.tokens += manifest.totalTokens;
    trained.squaredTokens += manifest.totalTokensSquared!;
    for (const ranks of [RANKS, RANKS / 2]) {
      largest = Math.max(largest, kvRunningCap({ kvCapacityTokens: ranks * KV_TOKENS, ranksRollingOut: ranks, trainedContext: trained, maxContextTokens: KV_TOKENS }));
    }
  }
  return largest;
}

describe("the admission's KV cap from the engines' reports (real Temporal)", () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  async function run(runId: string, engineKvTokens: number | undefined): Promise<RunFigures> {
    const context = env.context(kvConfig(runId, engineKvTokens));
    expect(context.parsed.config.rollout.kvCapacityTokensPerRank).toBeUndefined();
    const workers = await env.startWorkers(context);
    try {
      const { handle } = await env.startRun(context);
      const summary = (await handle.result()) as RunSummary;
      expect(summary.iterations).toBe(ITERATIONS);
      const status = await handle.query<RunStatus>('status');
      const store = env.store(context);
      // Every sample exactly once: in one batch, dropped, or still live; never in two.
      const audit = await store.audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(ITERATIONS * BATCH);
      const records = await store.readSamples(Array.from({ length: summary.samples.admitted }, (_, id) => id));
      const endMs = Math.max(...records.map((record) => record.completedAtMs ?? record.startedAtMs)) + 1;
      const counted = records.filter((record) => record.status !== 'dropped');
      expect(counted.length).toBeGreaterThan(BATCH);
      const peakRolling = peakConcurrent(counted.map((record) => ({ start: record.startedAtMs, end: record.completedAtMs ?? endMs })));
      const history = (iteration: number) => env.client.workflow.getHandle(iterationWorkflowId(runId, iteration)).fetchHistory();
      const reads = async (iteration: number) => scheduledActivityTypes(await history(iteration)).filter((type) => type === 'readKvCapacity').length;
      const capacityReads: [number, number] = [await reads(0), await reads(1)];
      const readBeforeFirstShard = completedBeforeScheduled(await history(0), 'readKvCapacity', 'runRolloutShards');
      return { status, peakRolling, largestCap: await largestCap(store), capacityReads, readBeforeFirstShard };
    } finally {
      await workers.stop();
    }
  }

  it('binds once the engines report a small capacity: fewer samples roll out at once than without, each sample exactly once', async () => {
    const capped = await run('kv-cap-engines', KV_TOKENS);
    // Every rank's engine reported, and status shows what the cap counts on.
    expect(capped.status.kvCapacity).toEqual({ reported: Array.from({ length: RANKS }, (_, rank) => ({ rank, tokens: KV_TOKENS })), configuredPerRank: null });
    expect(capped.largestCap).toBeLessThan(BATCH);
    // The first iteration reads the engines' capacity (one node); the next has every report.
    expect(capped.capacityReads).toEqual([1, 0]);
    expect(capped.readBeforeFirstShard).toBe(true);
    expect(capped.peakRolling).toBeLessThanOrEqual(capped.largestCap);

    const uncapped = await run('kv-cap-none', undefined);
    // Engines that report nothing, and no config: no KV cap, and status says so.
    expect(uncapped.status.kvCapacity).toEqual({ reported: Array.from({ length: RANKS }, (_, rank) => ({ rank, tokens: null })), configuredPerRank: null });
    expect(uncapped.peakRolling).toBeGreaterThan(capped.largestCap);
    // Engines that report none are asked once, not again.
    expect(uncapped.capacityReads).toEqual([1, 0]);
    expect(capped.peakRolling).toBeLessThan(uncapped.peakRolling);
    console.log(`KV cap from the engines: peak samples rolling at once ${capped.peakRolling} (cap at most ${capped.largestCap}) vs ${uncapped.peakRolling} without`);
  }, 600_000);
});
