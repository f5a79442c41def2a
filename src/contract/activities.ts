/**
 * The activity interfaces, as the workflows see them. Workflows import these types only
 * (proxyActivities); src/activities/ implements them.
 */
import type { BroadcastResult, MemoryTag, TensorLayout, WeightGroup, WeightGroupSpec } from '../engines/types';
import type {
  AwaitBatchInput,
  AwaitBatchResult,
  RankKvCapacity,
  RankMemoryInput,
  ShardGroupInput,
  ShardGroupResult,
  ShardInput,
  SealedBatchFigures,
  ShardOutcome,
  ShardResult,
  StopShardsAnswer,
  TrainStepInput,
  WeightSyncInput,
} from './types';

/** Run by the orchestrator worker: store bookkeeping, no GPU. */
export interface OrchestratorActivities {
  /** Creates the sample records (idempotent: existing samples keep their progress). */
  admitSamples(input: { runId: string; ids: number[]; version: number }): Promise<{ admitted: number; version: number }>;
  /** Waits until `batchSize` candidates completed (the workflow cancels it if every shard ends first). */
  awaitBatch(input: AwaitBatchInput): Promise<AwaitBatchResult>;
  /** Writes the batch manifest of the iteration and marks its samples (idempotent, exactly once). */
  sealBatch(input: { runId: string; iteration: number; fromVersion: number; sampleIds: number[] }): Promise<SealedBatchFigures>;
  /** Writes the batch manifest only (the sealing that training needs); sealBatch marks the samples after. */
  writeBatchManifest(input: { runId: string; iteration: number; fromVersion: number; sampleIds: number[] }): Promise<SealedBatchFigures>;
  /** The manifest of an iteration's batch if one was sealed (a retried iteration resumes at train). */
  readSealedBatch(input: { runId: string; iteration: number }): Promise<({ sampleIds: number[] } & SealedBatchFigures) | null>;
  /** After shards stopped: which of their samples completed, were dropped, or are unfinished. */
  settleShards(input: { runId: string; shards: { shardId: string; sampleIds: number[] }[] }): Promise<ShardOutcome[]>;
  dropSamples(input: { runId: string; ids: number[]; reason: string }): Promise<{ dropped: number; reason: string }>;
  /**
   * For a retried iteration: the store's view of `ids` and of every sample with id >= fromId
   * (what the failed attempt admitted), ascending by id.
   */
  describeSamples(input: { runId: string; ids: number[]; fromId: number }): Promise<AdmittedSample[]>;
}

export interface AdmittedSample {
  id: number;
  startVersion: number;
  status: 'running' | 'completed' | 'dropped';
  dropReason?: string;
}

/** What a memory activity left (a small readable result in the Temporal UI instead of a null payload). */
export interface NodeMemoryResult {
  ranks: number[];
  tags: MemoryTag[];
  state: 'released' | 'resident';
}

/** The weight version a rank's engine serves. */
export interface RankWeightVersion {
  rank: number;
  weightVersion: number;
}

/**
 * A resume's result: with the version each engine serves once resumed, by which the workflow finds
 * an engine restarted while its rank was released (it serves older weights, in no weight group).
 * Absent in results of workers before it.
 */
export interface NodeResumeResult extends NodeMemoryResult {
  served?: RankWeightVersion[];
}

export interface TrainerMemoryResult {
  node: number;
  state: 'onloaded' | 'offloaded';
}

/** Ranks of one node (all served by that node's worker). */
export interface NodeRanksInput {
  runId: string;
  ranks: number[];
}

/**
 * Weight sync by broadcast (src/activities/weightBroadcast.ts). Trainer queue: open, broadcast,
 * close, export (the disk fallback). Rank queues, once per node for its ranks: join, receive,
 * leave. The two sides of a collective run together; none is retried alone.
 */
export interface WeightBroadcastActivities {
  /** Opens the group on the trainer (rank 0, hosting the store) and writes the manifest to the store. */
  openWeightGroup(input: { runId: string; node: number; spec: WeightGroupSpec; bucketBytes: number }): Promise<WeightGroup>;
  broadcastWeights(input: { runId: string; node: number; groupName: string; version: number; bucketBytes: number; layout: TensorLayout }): Promise<BroadcastResult>;
  closeWeightGroup(input: { runId: string; node: number; groupName: string }): Promise<void>;
  /** Exports the trainer's weights of `version` for a disk sync (idempotent). */
  exportWeights(input: { runId: string; node: number; version: number }): Promise<void>;
  /**
   * Resolves once every listed rank's engine answers its status, asking again while one does not
   * answer or answers an HTTP 5xx (starting, or restarting after a crash); a malformed answer fails
   * at once. Run before a group forms: a member that cannot join leaves every other member waiting
   * in the formation until the group's timeout.
   */
  awaitWeightGroupMembers(input: NodeRanksInput): Promise<void>;
  /** Each rank joins as ranks rankOffsets[i].. of the group. */
  joinWeightGroup(input: NodeRanksInput & { group: WeightGroup; rankOffsets: number[] }): Promise<void>;
  /** Each rank receives `version` and serves it (checked). */
  receiveWeights(input: NodeRanksInput & { group: WeightGroup; version: number }): Promise<void>;
  leaveWeightGroup(input: NodeRanksInput & { groupName: string }): Promise<void>;
}

/** Run by the gpu-node worker that owns the rank's (or train node's) GPUs. */
export interface GpuNodeActivities extends WeightBroadcastActivities {
  /**
   * The agent loop for the shard's samples on the rank's engine; honours cancellation. Reads the
   * engine's KV capacity beside the loop and returns it with the outcome (the admission's KV cap).
   */
  runRolloutShard(input: ShardInput): Promise<ShardResult>;
  /**
   * The shards of a group (ShardGroupInput), each run as runRolloutShard runs one, side by side
   * under one heartbeat; resolves once every member has ended. Each member is stoppable by
   * stopShards from the group's start; one that ended while its siblings run is answered for by
   * a stop with the outcome it ended with. A member's failure stops its siblings (each
   * checkpoints) and then fails the group with it, so a retry runs every member again from the
   * store. Cancelling the group cancels every member.
   */
  runRolloutShards(input: ShardGroupInput): Promise<ShardGroupResult>;
  /**
   * Stops the listed shards running in this worker process at once (no wait for a heartbeat to
   * carry a cancellation): each checkpoints its samples and returns its outcome. A shard its
   * workflow's cancellation already ended here, or a group's member that ended while its group
   * still runs, is answered for with the outcome it ended with;
   * other shards not running here (not started yet, or between retries) are left to the
   * cancellation request. Sent to any rank queue of the node that runs the shards. Answers once
   * the stopped shards have checkpointed: `stopped` lists the ids it stopped, `checkpointed` those
   * whose samples are all in the store and which write to it no more (stopped or cancelled; a
   * shard that failed instead is not listed), and `outcomes` their outcomes, as the store has them
   * (absent from workers of an earlier build).
   */
  stopShards(input: { runId: string; shardIds: string[] }): Promise<StopShardsAnswer>;
  /**
   * The KV capacity each listed rank's engine reports (tokens; null: it reports none), read as a
   * shard reads it (cached per rank until its KV cache is reloaded). A rank whose read failed
   * otherwise than by a malformed answer is left out (said in the worker's log): unknown for now.
   * Sent to any rank queue of the node.
   */
  readKvCapacity(input: NodeRanksInput): Promise<RankKvCapacity[]>;
  releaseRankMemory(input: RankMemoryInput & { tags: MemoryTag[] }): Promise<void>;
  resumeRankMemory(input: RankMemoryInput & { tags: MemoryTag[] }): Promise<void>;
  syncRankWeights(input: WeightSyncInput): Promise<void>;
  /**
   * The same for several ranks of one node in one activity (sent to any of their rank queues):
   * one activity per node instead of one per rank keeps events per iteration from growing with
   * the ranks on a node.
   */
  releaseNodeMemory(input: NodeRanksInput & { tags: MemoryTag[] }): Promise<NodeMemoryResult>;
  resumeNodeMemory(input: NodeRanksInput & { tags: MemoryTag[] }): Promise<NodeResumeResult>;
  syncNodeWeights(input: NodeRanksInput & { version: number }): Promise<{ ranks: number[]; version: number }>;
  /**
   * Weight sync and expand in one activity per node: each rank of `reload` resumes its weights,
   * loads `version` and resumes its KV cache; every other rank loads `version`.
   */
  syncAndReloadNode(input: NodeRanksInput & { version: number; reload: number[] }): Promise<{ ranks: number[]; version: number; reloaded: number[] }>;
  /**
   * Onloads the node's part of the trainer; first releases `releaseRanks` (ranks of this node
   * that shrink released: one round trip for what always follows each other).
   */
  trainerOnload(input: { runId: string; node: number; releaseRanks?: number[] }): Promise<TrainerMemoryResult & { released?: number[] }>;
  /** loss is null when a retry finds the step already done. */
  trainStep(input: TrainStepInput): Promise<{ newVersion: number; loss: number | null }>;
  trainerOffload(input: { runId: string; node: number }): Promise<TrainerMemoryResult>;
}
