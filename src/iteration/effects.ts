/**
 * What the iteration program asks of the world, and nothing else. Two drivers implement it: the
 * Temporal iteration workflow (activities and timers, src/workflows/iterationEffects.ts) and the
 * discrete-event simulator (virtual ranks in virtual time, src/simulator/simEffects.ts).
 *
 * The program is a generator: every effect that takes time is a `Step`, a generator that yields
 * the driver's own suspension type `S` (a promise in the workflow, a virtual-time wait in the
 * simulator) and returns the effect's result. So the program is deterministic and synchronous to
 * the simulator, and a plain async function to the workflow. Effects that take no time (launching
 * a shard, reporting a phase) are plain calls.
 */
import type { MemoryTag } from '../engines/memoryTags';
import type { DropReason, MigrationPolicy, PoolState, RankId, RankWork } from '../gpu';
import type { AdmittedSample } from '../contract/activities';
import type { BroadcastSyncSpec, IterationProgress, SealedBatchFigures, ShardOutcome, WeightGroupState } from '../contract/types';

/** A suspended effect: yields the driver's suspension `S`, returns `T`. */
export type Step<S, T> = Generator<S, T, unknown>;

/** A rollout shard as the program knows it: a fixed set of samples on one rank. */
export interface ShardRef {
  id: string;
  rank: RankId;
  sampleIds: number[];
}

/** What an earlier attempt or execution of the same iteration left in the store. */
export interface StoreRecovery {
  /** Samples the store knows among the waiting ones and from the ledger's next id on. */
  seen: AdmittedSample[];
  /** The iteration's sealed batch, if an earlier attempt sealed it. */
  sealed: ({ sampleIds: number[] } & SealedBatchFigures) | null;
}

/** Reported at every phase change (the workflow's progress query, search attribute and details). */
export type PhaseReport = Omit<IterationProgress, 'iteration'>;

/** A group of ranks whose memory reload failed in the compensation (lost ranks excluded). */
export interface ReloadFailure {
  ranks: RankId[];
  error: unknown;
}

export interface IterationEffects<S> {
  /** Current time in ms (workflow time or virtual time). */
  now(): number;
  /** A phase began (no wait: progress is advisory). */
  phaseEntered(report: PhaseReport): void;
  /** The pool's roles changed (the simulator's timeline; nothing to do in the workflow). */
  poolChanged(pool: PoolState): void;
  /** The shard id of the next shard on `rank` (unique per execution: fences earlier owners out). */
  shardId(rank: RankId, serial: number): string;

  recoverFromStore(input: { waiting: number[]; fromId: number }): Step<S, StoreRecovery>;
  dropSamples(ids: number[], reason: DropReason): Step<S, void>;
  /**
   * Creates the admitted samples' records, then starts their shards (one step: admission always
   * launches). The Temporal driver admits inside the workflow task (a local activity): right for
   * an admission that follows no other work begun in the same step.
   */
  admitAndLaunch(input: { ids: number[]; version: number; shards: ShardRef[] }): Step<S, void>;
  /**
   * Begins what admitAndLaunch does, as work of its own beside whatever else the program begins
   * or awaits (the Temporal driver: an activity, not held in the workflow task); the shards start
   * once the records exist. One at a time; awaited by awaitAdmitAndLaunch.
   */
  beginAdmitAndLaunch(input: { ids: number[]; version: number; shards: ShardRef[] }): void;
  /** Waits for the admission begun by beginAdmitAndLaunch (its shards started); raises its failure. */
  awaitAdmitAndLaunch(): Step<S, void>;
  /**
   * Starts shards of samples that already exist, placed together; each runs until it ends or is
   * stopped. (The Temporal driver runs those on one node that the shrink stops together as one
   * activity.)
   */
  launchShards(shards: readonly ShardRef[], version: number): void;
  /**
   * Waits until `batchSize` of the candidates completed (returns them in completion order) or
   * every running shard ended first (returns undefined). A failing shard raises.
   */
  awaitBatch(input: { candidates: number[]; batchSize: number }): Step<S, number[] | undefined>;
  /**
   * Stops the shards (each checkpoints its samples before it acknowledges) and returns their
   * outcomes from the store, and the errors of shards that failed (ended other than by our stop).
   */
  stopShards(input: { shards: ShardRef[]; migration: MigrationPolicy; tolerateFailures: boolean }): Step<S, { outcomes: ShardOutcome[]; failures: unknown[] }>;
  /**
   * Begins writing the batch manifest (training needs it); marking each sample may go on until
   * `finishSeal`. `besideOtherWork`: the program issues other work (the shrink's stop) before it
   * awaits the manifest, which the Temporal driver then writes in an activity of its own (else
   * inside the workflow task). Awaited by awaitSealBatch.
   */
  beginSealBatch(input: { sampleIds: number[]; fromVersion: number; besideOtherWork: boolean }): void;
  /** Waits for the manifest begun by beginSealBatch; returns its figures. */
  awaitSealBatch(): Step<S, SealedBatchFigures>;
  /** Ends the per-sample marking begun with the manifest or found sealed (idempotent). */
  finishSeal(input: { sampleIds: number[]; fromVersion: number }): Step<S, void>;

  resumeMemory(ranks: RankId[], tags: MemoryTag[]): Step<S, void>;
  /** Resumes memory on every group it can; returns the groups that failed (a lost node is not a failure). */
  resumeMemorySettled(ranks: RankId[], tags: MemoryTag[]): Step<S, ReloadFailure[]>;
  /** The ranks load `version` from its file (with `broadcast` set, the trainer exports that file first: a broadcast run exports none per version). */
  syncWeights(ranks: RankId[], version: number, broadcast?: BroadcastSyncSpec): Step<S, void>;
  /**
   * Weight sync and expand: `reload` ranks resume weights, every rank gets `version`, `reload`
   * ranks resume KV cache. From disk: one step per node. With `broadcast`: one collective from the
   * trainer to every rank in `group` (kept from the last iteration when its members are the same,
   * else formed anew). Returns the group left formed for the next iteration (undefined: none).
   */
  syncAndReload(input: {
    ranks: RankId[];
    reload: RankId[];
    version: number;
    broadcast?: { spec: BroadcastSyncSpec; group: WeightGroupState | undefined };
  }): Step<S, WeightGroupState | undefined>;
  /**
   * Begins releasing the released ranks' memory (all tags), then onloading the trainer: one step,
   * since the onload needs those GPUs. Awaited by awaitReleaseAndOnloadTrainer.
   */
  beginReleaseAndOnloadTrainer(release: RankId[]): void;
  /** Waits for the release and onload begun by beginReleaseAndOnloadTrainer. */
  awaitReleaseAndOnloadTrainer(): Step<S, void>;
  /**
   * One train step on the sealed batch; returns the version every train node reached. A failing
   * shard raises. Tokens lagging `fromVersion` by more than `maxTokenLag` are left out of the loss.
   */
  trainStep(input: { fromVersion: number; batchTokens: number; maxTokenLag?: number }): Step<S, number[]>;
  /** Starts the trainer's offload without waiting (it runs alongside the stop of the shards). */
  beginTrainerOffload(): void;
  /** Waits for the offload begun by beginTrainerOffload. */
  awaitTrainerOffload(): Step<S, void>;
  trainerOffload(): Step<S, void>;

  sleep(ms: number): Step<S, void>;
  /** Samples still in their agent loop (the adaptive shrink trigger). */
  runningSamples(): number;
  /** In-flight work per rank (the least-work release policy). */
  inFlightWork(ranks: readonly RankId[]): RankWork[];
  /** Runs `step` so that a cancellation of the iteration does not interrupt it (the compensation). */
  nonCancellable<T>(step: Step<S, T>): Step<S, T>;

  /**
   * The KV capacity each rank's engine reported so far (tokens; null: it reports none), in this
   * iteration or an earlier one; a rank absent has not reported. The admission's KV cap
   * (`rollingKvCapacity`). The simulator's ranks report nothing: its config carries their capacity.
   */
  reportedKvCapacity(): ReadonlyMap<RankId, number | null>;
  /**
   * Reads the KV capacity of these ranks' engines (`reportedKvCapacity` holds each answer): best
   * effort, a rank that does not answer stays without a report.
   */
  readKvCapacity(ranks: RankId[]): Step<S, void>;
  /** Ranks found lost during this attempt (their node took no activity). */
  lostRanks(): ReadonlySet<RankId>;
  /** Whether the trainer's node was found lost (nothing to offload there). */
  trainerNodeLost(): boolean;
  /** Whether an error means that a node stopped taking activities. */
  isLostNode(error: unknown): boolean;
}
