/**
 * What travels between the run workflow, the iteration workflows and the activities. Only ids,
 * counts and versions: sample bodies stay in the trajectory store (claim-check). Pure types and
 * zod schemas for the inputs users can send (updates); safe to import from workflow code.
 */
import type { PoolLayout, RankId } from '../gpu/layout';
import type { SampleLedger } from '../gpu/ledger';
import type { PoolState } from '../gpu/roles';
import type { LagHistogram, LagSummary, StalenessPolicy } from '../gpu/staleness';

/** Everything a run needs, derived once from the validated config (src/config). */
export interface RunSpec {
  runId: string;
  layout: PoolLayout;
  /** Stop after this many iterations (counted from 0). */
  iterations: number;
  batchSize: number;
  asyncRatio: number;
  /** Live samples (not yet in a batch) the rollout keeps going at once. */
  maxConcurrentSamples: number;
  /**
   * rollout.kvCapacityTokensPerRank: an upper bound on the KV-cache tokens the admission's KV cap
   * counts per rank, and the value for a rank whose engine reports none. Absent: the engines' reports alone.
   */
  kvCapacityTokensPerRank?: number;
  /** Staleness policy (src/gpu/staleness.ts). Absent in specs of runs started before it: 'drop'. */
  staleness?: { policy: StalenessPolicy; maxTokenLag?: number };
  maxTurns: number;
  maxTokens: number;
  /** Simulated milliseconds a trajectory may run, from its start, before its environment times out. */
  environmentTimeoutMs: number;
  taskQueuePrefix: string;
  /** Liveness: a shard or engine call silent this long is considered dead and retried. */
  heartbeatTimeoutMs: number;
  /**
   * A rank or trainer activity not picked up by any worker for this long marks the node's ranks
   * lost. Absent in specs of runs started before lost-node handling (they never mark ranks lost).
   */
  lostNodeTimeoutMs?: number;
  /** Retry policy of engine and store activities; after the last attempt the transition is rolled back. */
  activityRetry: { initialIntervalMs: number; maximumAttempts: number };
  /** Continue-as-new after this many iterations in one run-workflow execution. */
  iterationsPerRunExecution: number;
  /** Weight sync by broadcast; absent: every engine loads the exported weights from disk. */
  weightSync?: BroadcastSyncSpec;
}

/** How the iteration syncs weights by broadcast (engine.weightSync in the config). */
export interface BroadcastSyncSpec {
  mode: 'broadcast';
  backend: 'gloo' | 'nccl';
  bucketBytes: number;
  /** One deadline for a whole collective (group formation and transfer). */
  timeoutMs: number;
  attempts: number;
  fallback: 'none' | 'disk';
  masterAddress: string;
  /** flattened_bucket (SGLang, reference, simulated) or per_tensor (vLLM). */
  layout: 'flattened_bucket' | 'per_tensor';
}

/**
 * The weight-update group a run keeps between iterations: created once, rebuilt when a member
 * restarted (a shard found its engine behind, or its first collective fails), when the members
 * change (lost or returned ranks) or after any failed collective.
 */
export interface WeightGroupState {
  name: string;
  masterAddress: string;
  masterPort: number;
  worldSize: number;
  backend: 'gloo' | 'nccl';
  /** The rollout ranks in the group (rank offsets follow from the layout). */
  ranks: RankId[];
}

export type Phase = 'starting' | 'rollout' | 'shrink' | 'train' | 'stop' | 'sync' | 'expand' | 'recovering' | 'done';

export interface IterationInput {
  spec: RunSpec;
  iteration: number;
  /** Weight version every rank serves at the start; the train step produces version + 1. */
  version: number;
  ledger: SampleLedger;
  /** The batch size in force (the run's current value; an update may change it between iterations). */
  batchSize: number;
  /** Operator override of the ranks released at shrink (must cover the train group's ranks). */
  shrinkOverride?: RankId[];
  /** Ranks whose node is lost: the iteration runs without them. */
  lostRanks?: RankId[];
  /** Ranks the operator returned since the last iteration: reloaded and synced before the rollout. */
  rejoinRanks?: RankId[];
  /** Broadcast sync: the group the previous iteration left formed. */
  weightGroup?: WeightGroupState;
  /** What the ranks' engines reported of their KV capacity so far (the admission's KV cap); absent: none yet. */
  engineKvCapacity?: RankKvCapacity[];
  /**
   * The run's previous iteration completed in this execution of the run workflow and handed over
   * this ledger: the store holds nothing the ledger lacks, so a first attempt skips the recovery
   * from the store (absent: recover, as after a failure, a retry or a continue-as-new).
   */
  ledgerMatchesStore?: boolean;
}

/** What the store says of a sealed batch: its tokens, and its generated tokens by version lag (absent for manifests written before). */
export interface SealedBatchFigures {
  totalTokens: number;
  /** Σ over the batch's samples of their totalTokens squared (the admission's KV cap; absent for manifests written before). */
  totalTokensSquared?: number;
  tokenLags?: LagHistogram;
}

export interface IterationStats {
  iteration: number;
  fromVersion: number;
  toVersion: number;
  batchSamples: number;
  batchTokens: number;
  admitted: number;
  /** Unfinished samples moved off released ranks at shrink. */
  migrated: number;
  dropped: Record<string, number>;
  /** Live samples carried into the next iteration. */
  carriedOver: number;
  startedAtMs: number;
  endedAtMs: number;
  /** Wall-clock ms per phase. */
  phaseMs: Partial<Record<Phase, number>>;
  /** The batch's generated tokens by version lag behind fromVersion (src/gpu/staleness.ts). */
  tokenLags?: LagHistogram;
}

/** What the iteration decided: the same program makes the same decisions in the simulator. */
export interface IterationDecisions {
  /** The trained batch, in selection order. */
  batchIds: number[];
  /** Ranks released at shrink (ascending). */
  released: RankId[];
  /** Unfinished samples moved off the released ranks (ascending). */
  migratedIds: number[];
}

export interface IterationResult {
  version: number;
  ledger: SampleLedger;
  stats: IterationStats;
  decisions: IterationDecisions;
  /** Broadcast sync: the group left formed for the next iteration (absent: none). */
  weightGroup?: WeightGroupState;
  /** The engines' KV capacity reports known at the end (the input's, updated by this iteration's shards); absent: none. */
  engineKvCapacity?: RankKvCapacity[];
}

/** The iteration's latest phase report, answered by its `progress` query (updated at every phase change). */
export interface IterationProgress {
  iteration: number;
  /**
   * The iteration workflow's attempt (1 first; a retry after a failed attempt starts again from
   * the iteration's starting version). Absent from workers that predate it.
   */
  attempt?: number;
  phase: Phase;
  pool: PoolState;
  version: number;
  samplesRunning: number;
  samplesCompleted: number;
  samplesWaiting: number;
  batchSamples: number;
}

export interface RunStatus {
  runId: string;
  strategy: string;
  iteration: number;
  iterationsTotal: number;
  /** The run's phase; while an iteration runs, the iteration's (merged in from its progress query). */
  phase: Phase;
  version: number;
  paused: boolean;
  pauseRequested: boolean;
  stopRequested: boolean;
  pool: PoolState | undefined;
  samples: {
    admitted: number;
    trained: number;
    dropped: Record<string, number>;
    running: number;
    completedWaiting: number;
    waiting: number;
  };
  /**
   * The staleness figures of the run so far: trained ÷ (trained + dropped) samples, and the version
   * lag of the trained tokens (absent before any batch with per-token versions).
   */
  staleness?: { policy: StalenessPolicy; utilization: number; tokenLag: LagSummary };
  batchSize: number;
  shrinkOverride: RankId[] | undefined;
  lastIteration: IterationStats | undefined;
  /** Most recent failure of an iteration attempt, if any, so status shows why it is retrying. */
  lastError: string | undefined;
  /**
   * While an iteration runs: its workflow id. Its `progress` query holds the phase, pool, weight
   * version and sample counts, which `queryRunStatus` (src/temporal/runStatus.ts) merges in.
   */
  iterationWorkflowId?: string;
  /**
   * Set by `queryRunStatus` when the running iteration did not answer its progress query: why. The
   * phase, pool and live counts are then the run's own (as the iteration started).
   */
  progressUnavailable?: string;
  /** The running iteration's attempt, from its progress (absent: no progress, or a worker that predates it). */
  iterationAttempt?: number;
  /** Ranks marked lost (their node stopped answering); `returnRanks` brings them back. */
  lostRanks?: RankId[];
  /** Paused because the pool without the lost ranks is below the strategy minimum: returning ranks lets it go on (absent: not so). */
  pausedForLostRanks?: true;
  /**
   * What the admission's KV cap counts on (docs/design.md §5.2): the engines' reports so far and the
   * config's bound per rank. Absent while neither exists (no KV cap).
   */
  kvCapacity?: { reported: RankKvCapacity[]; configuredPerRank: number | null };
}

// ----- activity payloads -----

export interface ShardInput {
  runId: string;
  shardId: string;
  rank: RankId;
  sampleIds: number[];
  /** Weight version the rank serves; recorded on every turn. */
  version: number;
  maxTurns: number;
  maxTokens: number;
  environmentTimeoutMs: number;
}

/**
 * The shards of one launch on one node's ranks that are stopped together (all kept or all
 * released at the shrink), run as one activity: one activity per node instead of one per rank
 * keeps the server's updates of the iteration's state from growing with the ranks.
 */
export interface ShardGroupInput {
  runId: string;
  /** Each on a rank of the node whose queue the group is sent to; at least one, no shard twice. */
  shards: ShardInput[];
}

/** Each member's own result, in the input's order. */
export interface ShardGroupResult {
  results: ShardResult[];
}

export interface ShardOutcome {
  shardId: string;
  completed: number[];
  unfinished: number[];
  dropped: { id: number; reason: string }[];
}

/**
 * A rollout shard's own result: its outcome and the KV capacity its rank's engine reports (tokens;
 * null: the engine reports none). Absent in results recorded before engines reported it.
 */
export interface ShardResult extends ShardOutcome {
  kvCapacityTokens?: number | null;
  /**
   * The weight version its engine served, where that was behind the shard's version: at the
   * shard's start (the engine restarted since its rank's last sync; it loaded the shard's version
   * first where exported weights of it were), or else at its stop or end (it restarted while the
   * shard ran). Either way it holds no weight group the run kept. Absent otherwise.
   */
  engineBehind?: number;
}

/** The direct stop's answer (GpuNodeActivities.stopShards). */
export interface StopShardsAnswer {
  stopped: string[];
  checkpointed: string[];
  /**
   * The checkpointed shards' outcomes; absent from workers of an earlier build. Each says whether
   * the shard found its engine behind (`engineBehind`). A shard its cancellation ended carries its
   * engine's KV capacity report too (its cancelled activity returns none); a stopped one reports
   * that with its own result.
   */
  outcomes?: ShardResult[];
}

/** What a rank's engine reported of its KV capacity (null: none), as the run keeps it across iterations. */
export interface RankKvCapacity {
  rank: RankId;
  tokens: number | null;
}

export interface AwaitBatchInput {
  runId: string;
  iteration: number;
  /** Live samples eligible for this batch (admissible under the async ratio). */
  candidates: number[];
  batchSize: number;
}

/** Every completed candidate (at least batchSize), oldest completion first; the workflow picks the batch. */
export interface AwaitBatchResult {
  sampleIds: number[];
}

export interface RankMemoryInput {
  runId: string;
  rank: RankId;
}

export interface WeightSyncInput {
  runId: string;
  rank: RankId;
  version: number;
}

export interface TrainStepInput {
  runId: string;
  node: number;
  iteration: number;
  fromVersion: number;
  /** Lowest train node: it exports the new weights. */
  leader: boolean;
  /** rollout.staleness.maxTokenLag: tokens lagging more leave the loss (src/gpu/staleness.ts). */
  maxTokenLag?: number;
}
