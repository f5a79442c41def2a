/**
 * The iteration program's effects in virtual time (src/iteration/effects.ts): transitions and
 * training take the cost model's time, and every activity the workflow awaits in sequence costs
 * one control-plane round trip (ControlPlaneLatency), as it does in the pipeline. Per-sample and
 * per-rank behaviour stays in the simulator's world (the agent loop, the environment timeout and
 * the rank model on VirtualRank).
 */
import { memoryTagShareMs, trainStepMs, weightBroadcastMs } from '../engines/simulated/costFunctions';
import type { MemoryTag } from '../engines/types';
import type { GpuId, MigrationPolicy, PoolState, RankId, RankWork } from '../gpu';
import type { IterationEffects, ShardRef, Step } from '../iteration/effects';
import { beginAwaitSlot } from '../iteration/beginAwait';
import type { IterationState } from '../iteration/state';
import type { BroadcastSyncSpec, ShardOutcome, WeightGroupState } from '../contract/types';
import type { SimulationConfig } from './simulator';

/** What the simulator's run loop waits for: virtual time, or a condition on the world. */
export type Wait = { kind: 'sleep'; ms: number } | { kind: 'until'; ready: () => boolean };

/** The simulator's world as the effects see it (implemented by Simulator). */
export interface SimWorld {
  now(): number;
  runningSamples(): number;
  inFlightWork(ranks: readonly RankId[]): RankWork[];
  everyShardEnded(): boolean;
  watchBatch(candidates: readonly number[]): void;
  completedInWatch(): readonly number[];
  endWatch(): void;
  createSamples(ids: readonly number[], version: number): void;
  launchShard(shard: ShardRef): void;
  anyActive(shards: readonly ShardRef[]): boolean;
  stopShards(shards: readonly ShardRef[], migration: MigrationPolicy): ShardOutcome[];
  sealBatch(ids: readonly number[], trainVersion: number): { totalTokens: number; totalTokensSquared: number };
  markStale(ids: readonly number[]): void;
  setPool(pool: PoolState): void;
  onloadTrainer(trainGpus: readonly GpuId[]): number;
  setTrainer(activity: 'train' | 'offload' | undefined, trainGpus: readonly GpuId[]): void;
  setSyncing(on: boolean): void;
  setServingVersion(version: number): void;
  flushCache(rank: RankId): void;
  /**
   * What the ranks' engines reported of their KV capacity, across iterations: none until a read,
   * which answers null (the simulator's capacity is its config's, `simulationConfig`).
   */
  kvCapacityReports(): Map<RankId, number | null>;
  /** Runs `event` after `ms` of virtual time. */
  after(ms: number, event: () => void): void;
}

function* sleep(ms: number): Step<Wait, void> {
  yield { kind: 'sleep', ms };
}

type Effects = IterationEffects<Wait>;

/** Latency helpers shared by the effect groups. */
function timing(cfg: SimulationConfig) {
  const { cost } = cfg;
  const { activityRoundTripMs } = cfg.controlPlane;
  return {
    cost,
    activityRoundTripMs,
    shardStopMs: cfg.controlPlane.shardStopMs,
    roundTrips: (count: number) => sleep(count * activityRoundTripMs),
    tagsMs: (tags: readonly MemoryTag[]) => tags.reduce((sum, tag) => sum + memoryTagShareMs(cost, tag, cost.onloadMs), 0),
  };
}

export function simEffects(world: SimWorld, cfg: SimulationConfig, state: IterationState): Effects {
  const noLostRanks: ReadonlySet<RankId> = new Set();
  return {
    now: () => world.now(),
    phaseEntered: () => undefined,
    poolChanged: (pool) => world.setPool(pool),
    shardId: (rank, serial) => `s${serial}-r${rank}`,
    launchShards: (shards) => {
      for (const shard of shards) world.launchShard(shard);
    },
    ...storeEffects(world, cfg),
    ...rankEffects(world, cfg),
    ...trainerEffects(world, cfg, state),
    sleep,
    runningSamples: () => world.runningSamples(),
    inFlightWork: (ranks) => world.inFlightWork(ranks),
    nonCancellable: (step) => step,
    reportedKvCapacity: () => world.kvCapacityReports(),
    // Asked only where the config gives no capacity (`ranksWithoutKvCapacity`): the ranks report none.
    *readKvCapacity(ranks) {
      for (const rank of ranks) world.kvCapacityReports().set(rank, null);
      yield* timing(cfg).roundTrips(1);
    },
    lostRanks: () => noLostRanks,
    trainerNodeLost: () => false,
    isLostNode: () => false,
  };
}

type StoreEffects = Pick<
  Effects,
  'recoverFromStore' | 'dropSamples' | 'admitAndLaunch' | 'beginAdmitAndLaunch' | 'awaitAdmitAndLaunch' | 'awaitBatch' | 'stopShards' | 'beginSealBatch' | 'awaitSealBatch' | 'finishSeal'
>;

/** Work begun in virtual time: done one round trip after it began, whatever the program does meanwhile. */
function begunWork<T>(world: SimWorld, activityRoundTripMs: number, what: string) {
  const slot = beginAwaitSlot<{ result: T; doneAt: number }>(what);
  return {
    begin(result: T): void {
      slot.begin({ result, doneAt: world.now() + activityRoundTripMs });
    },
    *await(): Step<Wait, T> {
      const begun = slot.take();
      yield* sleep(Math.max(0, begun.doneAt - world.now()));
      return begun.result;
    },
  };
}

function storeEffects(world: SimWorld, cfg: SimulationConfig): StoreEffects {
  const { roundTrips, shardStopMs, activityRoundTripMs } = timing(cfg);
  const admission = begunWork<void>(world, activityRoundTripMs, 'admission');
  const manifest = begunWork<{ totalTokens: number; totalTokensSquared: number }>(world, activityRoundTripMs, 'batch manifest');
  return {
    *recoverFromStore() {
      // describeSamples and readSealedBatch, issued together: one round trip; nothing left behind.
      yield* roundTrips(1);
      return { seen: [], sealed: null };
    },
    *dropSamples(ids) {
      world.markStale(ids);
      yield* roundTrips(1);
    },
    *admitAndLaunch({ ids, version, shards }) {
      world.createSamples(ids, version);
      for (const shard of shards) world.launchShard(shard);
      yield* roundTrips(1);
    },
    beginAdmitAndLaunch({ ids, version, shards }) {
      world.createSamples(ids, version);
      for (const shard of shards) world.launchShard(shard);
      admission.begin();
    },
    awaitAdmitAndLaunch: () => admission.await(),
    *awaitBatch({ candidates, batchSize }) {
      world.watchBatch(candidates);
      yield { kind: 'until', ready: () => world.completedInWatch().length >= batchSize || world.everyShardEnded() };
      // awaitBatch's answer (or the shards' ends) reaches the workflow.
      yield* roundTrips(1);
      if (world.completedInWatch().length < batchSize) return undefined;
      const completed = [...world.completedInWatch()];
      world.endWatch();
      return completed;
    },
    *stopShards({ shards, migration }) {
      // The shards run on until the direct stop reaches them; its answer, with their outcomes, is one more round trip.
      if (world.anyActive(shards)) yield* sleep(shardStopMs);
      const outcomes = world.stopShards(shards, migration);
      yield* roundTrips(1);
      return { outcomes, failures: [] };
    },
    beginSealBatch({ sampleIds, fromVersion }) {
      manifest.begin(world.sealBatch(sampleIds, fromVersion));
    },
    awaitSealBatch: () => manifest.await(),
    *finishSeal() {
      // Marking runs alongside the shrink and training: never on the critical path here.
    },
  };
}

function rankEffects(world: SimWorld, cfg: SimulationConfig): Pick<Effects, 'resumeMemory' | 'resumeMemorySettled' | 'syncWeights' | 'syncAndReload'> {
  const { cost, activityRoundTripMs, tagsMs } = timing(cfg);
  return {
    *resumeMemory(_ranks, tags) {
      yield* sleep(tagsMs(tags) + activityRoundTripMs);
    },
    *resumeMemorySettled(_ranks, tags) {
      yield* sleep(tagsMs(tags) + activityRoundTripMs);
      return [];
    },
    *syncWeights(ranks, version) {
      world.setSyncing(true);
      yield* sleep(cost.weightSyncMs + activityRoundTripMs);
      world.setSyncing(false);
      world.setServingVersion(version);
      // KV computed under the old weights is stale: every engine flushes its prefix cache.
      for (const rank of ranks) world.flushCache(rank);
    },
    *syncAndReload({ ranks, reload, version, broadcast }) {
      if (reload.length > 0) yield* sleep(tagsMs(['weights']));
      world.setSyncing(true);
      let group: WeightGroupState | undefined;
      if (broadcast === undefined) yield* sleep(cost.weightSyncMs);
      else {
        // The pipeline awaits the reload, the collective and the KV reload in turn: one round trip each.
        if (reload.length > 0) yield* sleep(activityRoundTripMs);
        const kept = broadcast.group !== undefined && sameMembers(broadcast.group.ranks, ranks) && broadcast.group.backend === broadcast.spec.backend;
        // Forming a group: the trainer opens it, then every node joins (two round trips).
        if (!kept) yield* sleep(2 * activityRoundTripMs);
        group = kept ? broadcast.group : simulatedGroup(cfg, broadcast.spec, ranks, version);
        yield* sleep(weightBroadcastMs(cost, Math.max(...ranks.map((rank) => cfg.layout.ranks[rank]!.gpus.length))) + activityRoundTripMs);
      }
      world.setSyncing(false);
      world.setServingVersion(version);
      for (const rank of ranks) world.flushCache(rank);
      yield* sleep((reload.length > 0 ? tagsMs(['kv_cache']) : 0) + activityRoundTripMs);
      return group;
    },
  };
}

function sameMembers(a: readonly RankId[], b: readonly RankId[]): boolean {
  const sorted = [...b].sort((x, y) => x - y);
  return a.length === b.length && [...a].sort((x, y) => x - y).every((rank, i) => rank === sorted[i]);
}

/** The group the pipeline would form: the trainer is member 0, each rank one member per GPU. */
function simulatedGroup(cfg: SimulationConfig, spec: BroadcastSyncSpec, ranks: readonly RankId[], version: number): WeightGroupState {
  const worldSize = 1 + ranks.reduce((sum, rank) => sum + cfg.layout.ranks[rank]!.gpus.length, 0);
  return { name: `sim-v${version}`, masterAddress: spec.masterAddress, masterPort: 0, worldSize, backend: spec.backend, ranks: [...ranks].sort((a, b) => a - b) };
}

function trainerEffects(
  world: SimWorld,
  cfg: SimulationConfig,
  state: IterationState,
): Pick<Effects, 'beginReleaseAndOnloadTrainer' | 'awaitReleaseAndOnloadTrainer' | 'trainStep' | 'beginTrainerOffload' | 'awaitTrainerOffload' | 'trainerOffload'> {
  const { cost, activityRoundTripMs, roundTrips } = timing(cfg);
  let offloaded = true;
  let releasing: RankId[] | undefined;
  return {
    // Begun beside the admission on the kept ranks, run here when awaited: nothing between the
    // begin and the await takes virtual time.
    beginReleaseAndOnloadTrainer(release) {
      releasing = [...release];
    },
    *awaitReleaseAndOnloadTrainer() {
      const release = releasing;
      if (release === undefined) throw new Error('awaitReleaseAndOnloadTrainer: no release and onload was begun');
      releasing = undefined;
      if (release.length > 0) {
        yield* sleep(cost.offloadMs);
        for (const rank of release) world.flushCache(rank);
      }
      // Called every iteration (a no-op when the trainer stayed onloaded).
      const onloadMs = world.onloadTrainer(state.layout.trainGpus);
      if (onloadMs > 0) yield* sleep(onloadMs);
      yield* roundTrips(1);
    },
    *trainStep({ fromVersion, batchTokens }) {
      const { trainGpus, shrinkRanks } = state.layout;
      world.setTrainer('train', trainGpus);
      yield* sleep(trainStepMs(cost, batchTokens, trainGpus.length) + activityRoundTripMs);
      if (shrinkRanks.length === 0) world.setTrainer(undefined, trainGpus);
      return [fromVersion + 1];
    },
    beginTrainerOffload() {
      const { trainGpus } = state.layout;
      offloaded = false;
      world.setTrainer('offload', trainGpus);
      world.after(cost.trainerOffloadMs + activityRoundTripMs, () => {
        world.setTrainer(undefined, trainGpus);
        offloaded = true;
      });
    },
    *awaitTrainerOffload() {
      yield { kind: 'until', ready: () => offloaded };
    },
    *trainerOffload() {
      const { trainGpus } = state.layout;
      world.setTrainer('offload', trainGpus);
      yield* sleep(cost.trainerOffloadMs + activityRoundTripMs);
      world.setTrainer(undefined, trainGpus);
    },
  };
}
