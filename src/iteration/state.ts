/**
 * The iteration's mutable state, in one object: what the program has decided so far. Drivers may
 * read it (the simulator reads the ledger); only the program's operations write it.
 */
import { initialPoolState, type PoolLayout, type PoolState, type RankId, type SampleLedger, type SchedulingPolicy } from '../gpu';
import type { BroadcastSyncSpec, IterationDecisions, IterationStats, Phase, SealedBatchFigures, WeightGroupState } from '../contract/types';
import { type AdmissionPolicy } from './admission';
import type { ShardRef } from './effects';

/** What the program is asked to do: one iteration of one run. */
export interface ProgramInput {
  layout: PoolLayout;
  iteration: number;
  /** Weight version every rank serves at the start. */
  fromVersion: number;
  ledger: SampleLedger;
  batchSize: number;
  asyncRatio: number;
  maxConcurrentSamples: number;
  /**
   * rollout.kvCapacityTokensPerRank: the most KV-cache tokens the 'resume' admission's KV cap counts per
   * rank, and the value for a rank whose engine reports none (`rankKvCapacity`, src/gpu/staleness.ts).
   */
  kvCapacityTokensPerRank?: number;
  /** rollout.maxTokens: the longest context a trajectory reaches (the KV cap's estimate before any batch is trained). */
  maxContextTokens: number;
  /** rollout.staleness.maxTokenLag: generated tokens lagging the trained version by more are left out of the loss. */
  maxTokenLag?: number;
  /** Operator override of the ranks released at shrink. */
  shrinkOverride?: RankId[];
  /** Ranks out of the pool (their node is lost). */
  lostRanks: RankId[];
  /** Ranks returned by the operator: reloaded and synced before the rollout. */
  rejoinRanks: RankId[];
  options: ProgramOptions;
  /** Weight sync by broadcast; absent: every rank loads the weights from disk. */
  weightSync?: BroadcastSyncSpec;
  /** Broadcast sync: the weight-update group the previous iteration left formed. */
  weightGroup?: WeightGroupState;
  /**
   * Whether the iteration first takes in what the store holds beyond its ledger (an earlier attempt's
   * admissions, completions and sealed batch). False only where the driver knows the ledger is the
   * one a completed iteration handed over, unchanged since.
   */
  recoverFromStore: boolean;
}

/** The adaptive shrink trigger's parameters (docs/simulator.md). */
export interface AdaptiveTriggerOptions {
  /** The cost model's decodeHalfSaturationConcurrency. */
  halfSaturation: number;
  /** How often the trigger re-checks (ms). */
  pollMs: number;
  /** The longest the shrink may wait once the batch is ready, for a batch of this many tokens. */
  maxWaitMs(batchTokens: number): number;
}

/** The scheduling choices of the program: the policy the bench measures is the policy the pipeline runs. */
export interface ProgramOptions {
  policy: SchedulingPolicy;
  admission: AdmissionPolicy;
  /** Needed by the 'adaptive' trigger only. */
  adaptive?: AdaptiveTriggerOptions;
}

export interface IterationState {
  readonly input: ProgramInput;
  /** The iteration's layout: the configured one, or with the train group moved (least-work release). */
  layout: PoolLayout;
  ledger: SampleLedger;
  pool: PoolState;
  phase: Phase;
  phaseStartedAt: number;
  /** Shards started and not yet settled, by id. */
  shards: Map<string, ShardRef>;
  shardSerial: number;
  /** The sealed batch, once its manifest's figures are in. */
  batch: ({ sampleIds: number[] } & SealedBatchFigures) | undefined;
  /** The batch sealed in the ledger whose manifest is being written (beginSeal until awaitSeal). */
  sealing: number[] | undefined;
  /** The shards of an admission begun beside other work, not started until it ends (beginRefill until awaitRefill). */
  admitting: ShardRef[] | undefined;
  /** Ranks released at shrink and those that keep rolling out (set at shrink). */
  release: RankId[];
  keep: RankId[];
  /** The ranks in the pool this iteration (all but the lost ones). */
  active: RankId[];
  trainerOnloaded: boolean;
  /** The version the train step produced, once it did. */
  committedVersion: number | undefined;
  /** Broadcast sync: the group formed now (the previous iteration's until this one syncs). */
  weightGroup: WeightGroupState | undefined;
  stats: IterationStats;
  decisions: IterationDecisions;
}

export function createIterationState(input: ProgramInput, nowMs: number): IterationState {
  return {
    input,
    layout: input.layout,
    ledger: input.ledger,
    pool: initialPoolState(input.layout, [...input.lostRanks, ...input.rejoinRanks]),
    phase: 'starting',
    phaseStartedAt: nowMs,
    shards: new Map(),
    shardSerial: 0,
    batch: undefined,
    sealing: undefined,
    admitting: undefined,
    release: [],
    keep: [],
    active: [],
    trainerOnloaded: false,
    committedVersion: undefined,
    weightGroup: input.weightGroup,
    stats: {
      iteration: input.iteration,
      fromVersion: input.fromVersion,
      toVersion: input.fromVersion,
      batchSamples: 0,
      batchTokens: 0,
      admitted: 0,
      migrated: 0,
      dropped: {},
      carriedOver: 0,
      startedAtMs: nowMs,
      endedAtMs: 0,
      phaseMs: {},
    },
    decisions: { batchIds: [], released: [], migratedIds: [] },
  };
}
