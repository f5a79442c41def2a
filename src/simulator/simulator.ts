/**
 * The discrete-event simulator: whole runs in virtual time. It keeps no flow of its own: every
 * iteration is the iteration program (src/iteration/program.ts) that the iteration workflow runs,
 * with effects carried out on virtual ranks (src/simulator/simEffects.ts). A rank's generate calls take
 * the rank model's time (src/engines/simulated/roofline.ts: the capacity-aware roofline, or the assumed
 * rates of the simulated engines), transitions and training the cost model's
 * (src/engines/simulated/costFunctions.ts); the workload is the WorkloadModel's, and the per-sample agent
 * loop follows the rollout shard activity (src/activities/gpuNode.ts).
 *
 * Deterministic for a seed: the workload is a pure function of (seed, sample, turn) and events at
 * one instant run in scheduling order. Pure: no Temporal, no clocks, no I/O.
 */
import { trainStepMs, weightBroadcastMs } from '../engines/simulated/costFunctions';
import type { RankModel } from '../engines/simulated/roofline';
import type { CostModel } from '../engines/types';
import type { WorkloadModel } from '../engines/simulated/workload';
import {
  addTokenLags,
  contextSums,
  emptyLedger,
  keptPrefixTokens,
  spanTokens,
  type CountHistogram,
  type DropReason,
  type LagHistogram,
  type GpuId,
  type MigrationPolicy,
  type PoolLayout,
  type PoolState,
  type RankId,
  type RankWork,
  type SampleLedger,
  type SchedulingPolicy,
  type StalenessPolicy,
  type VersionSpan,
} from '../gpu';
import { stalenessAdmission } from '../iteration/admission';
import type { ShardRef } from '../iteration/effects';
import { runIteration, type ProgramResult } from '../iteration/program';
import { createIterationState, type IterationState, type ProgramInput } from '../iteration/state';
import type { BroadcastSyncSpec, IterationDecisions, Phase, ShardOutcome, WeightGroupState } from '../contract/types';
import type { Timeline, TimelineRole } from '../timeline/types';
import { EventQueue } from './eventQueue';
import { LaneRecorder } from './lanes';
import { simEffects, type SimWorld, type Wait } from './simEffects';
import { VirtualRank, type DecodeJob } from './virtualRank';

export interface SimulationConfig {
  /** Label of the run (e.g. "multiplexed (160 GPUs)"). */
  label: string;
  layout: PoolLayout;
  iterations: number;
  batchSize: number;
  asyncRatio: number;
  maxConcurrentSamples: number;
  maxTurns: number;
  maxTokens: number;
  environmentTimeoutMs: number;
  cost: CostModel;
  /** Each rollout rank's capacity and decode/prefill costs (roofline or assumed rates). */
  rankModel: RankModel;
  workload: WorkloadModel;
  policy: SchedulingPolicy;
  /** What becomes of samples that outlive their version (the pipeline's rollout.staleness). */
  staleness: { policy: StalenessPolicy; maxTokenLag?: number };
  /** The KV capacity per rank the admission's KV cap uses (src/gpu/staleness.ts); absent: no KV cap. */
  kvCapacityTokensPerRank?: number;
  /** Latency of the control plane itself, in simulated ms (see ControlPlaneLatency). */
  controlPlane: ControlPlaneLatency;
  /** Timeline segments are recorded for the first this-many iterations (0: none). */
  timelineIterations: number;
  /** Weight sync by broadcast (costed as weightBroadcastMs); absent: from disk (weightSyncMs). */
  weightSync?: BroadcastSyncSpec;
}

/**
 * What the durable control plane adds to an iteration besides the engines' work: every activity
 * the iteration workflow awaits in sequence costs a round trip through the Temporal server, and a
 * running shard stops when the workflow's direct stop activity reaches it (docs/design.md §5.2).
 */
export interface ControlPlaneLatency {
  /** One activity round trip (schedule, pick up, complete, workflow task). */
  activityRoundTripMs: number;
  /** From the workflow stopping a running shard to the shard having checkpointed (one round trip). */
  shardStopMs: number;
}

export interface IterationRecord {
  iteration: number;
  startMs: number;
  endMs: number;
  phaseMs: Partial<Record<Phase, number>>;
  batchSamples: number;
  batchTokens: number;
  admitted: number;
  migrated: number;
  released: RankId[];
  dropped: Partial<Record<DropReason, number>>;
  carriedOver: number;
  /** The batch, the released ranks and the migrated samples (the same program decides them in the pipeline). */
  decisions: IterationDecisions;
  /**
   * Virtual ms from the batch's last completion to the next completion of any sample (null: none
   * followed). Which samples make the batch, and which are still rolling out when the stop reaches
   * them, turn on this gap: the pipeline, on real timers, decides alike only where it exceeds its
   * control plane's latency and jitter (test/simulator/validation.test.ts).
   */
  batchMarginMs: number | null;
  /**
   * The shortest gap, in virtual ms, between two consecutive completions on different ranks from
   * the iteration's start to its batch's last (null: no such pair). Samples admitted as others
   * complete are placed on the ranks those completions freed, so their order decides placement;
   * the pipeline keeps that order only where this exceeds the jitter of its completions.
   */
  orderMarginMs: number | null;
}

export interface SimulationTotals {
  virtualMs: number;
  trainedSamples: number;
  trainedTokens: number;
  /** Tokens decoded by the rollout engines, including those later discarded. */
  decodedTokens: number;
  /** Decoded tokens of interrupted turns that were thrown away (reissue-turn migration). */
  discardedTokens: number;
  /** Trajectories that reached their end (trained or not yet). */
  completedTrajectories: number;
  dropped: Record<DropReason, number>;
  /** Samples moved off released ranks at shrink, summed over iterations. */
  migrated: number;
  /** Tokens the trained trajectories generated (their share of the rollout work). */
  trainedGeneratedTokens: number;
  /** Trajectories whose drawn turn count exceeded maxTurns (cut to maxTurns). */
  cutByTurnLimit: number;
  /** Trajectories the token budget (maxTokens) ended or truncated. */
  cutByTokenLimit: number;
  events: number;
  staleness: StalenessTotals;
}

/** What the staleness figures are computed from (src/gpu/staleness.ts). */
export interface StalenessTotals {
  /** Trained generated tokens by version lag behind the version they were trained from. */
  lagHistogram: LagHistogram;
  /** Trained generated tokens beyond rollout.staleness.maxTokenLag (left out of the loss). */
  tokensOverLagLimit: number;
  /** Generated tokens of trained samples, and every token decoded for them (regenerated ones included). */
  trainedGeneratedTokens: number;
  trainedDecodedTokens: number;
  /** Samples dropped (any reason) and the tokens decoded for them. */
  discarded: number;
  discardedDecodedTokens: number;
  /** Turns per trajectory (the workload's length) of trained, of decided (trained or dropped), and of all admitted samples. */
  trainedTurns: CountHistogram;
  decidedTurns: CountHistogram;
  admittedTurns: CountHistogram;
  /** Samples admitted and still live at the end of the run (neither trained nor dropped yet). */
  liveAtEnd: number;
}

/** What the rollout ranks did, summed over ranks: the capacity-aware model's counters. */
export interface RankTotals {
  decodedTokens: number;
  /** What the ranks would have decoded without prefill stalls at their batches (VirtualRank.potentialTokens). */
  potentialTokens: number;
  prefilledTokens: number;
  admitted: number;
  queuedAdmissions: number;
  evictions: number;
}

export interface SimulationResult {
  label: string;
  strategy: PoolLayout['strategy'];
  gpus: number;
  ranks: number;
  policy: SchedulingPolicy;
  staleness: SimulationConfig['staleness'];
  /** The cost model's weight-sync time of one rank (all ranks sync in parallel; a broadcast reaches all at once). */
  weightSyncMs: number;
  iterations: IterationRecord[];
  totals: SimulationTotals;
  /** GPU-milliseconds spent in each role over the whole run. */
  gpuMsByRole: Record<TimelineRole, number>;
  rankTotals: RankTotals;
  kvCapacityTokensPerRank: number;
  /** Peak decode tokens/s of one rank and its GPUs (to weigh occupancy by work). */
  rankPeakDecodeTokensPerSecond: number;
  gpusPerRank: number;
  /** Prefill and training peak rates, for the ideal bound. */
  rankPeakPrefillTokensPerSecond: number;
  trainTokensPerSecondPerGpu: number;
  timeline: Timeline;
}

interface SimSample {
  id: number;
  startVersion: number;
  startedAt: number;
  turns: number;
  /** Turns committed so far (the next turn's index). */
  turn: number;
  /** Versions of the committed turns' generated tokens, and of the current turn's kept prefix or finished generation. */
  spans: VersionSpan[];
  turnSpans: VersionSpan[];
  /** Every token decoded for this sample, regenerated ones included. */
  decoded: number;
  /** prompt + generated + observations of committed turns. */
  committedTokens: number;
  /** Tokens of the current turn kept from an interrupted attempt. */
  partialTokens: number;
  status: 'running' | 'completed' | 'dropped';
  dropReason?: DropReason;
  completionSeq: number;
  shard: SimShard | undefined;
  /** The running generate call, or the running environment step. */
  job: DecodeJob | undefined;
  /** The running call's prefix: its turn's tokens kept from an interrupted attempt (to account an abort). */
  callPrefix: number;
  envEvent: { cancelled: boolean } | undefined;
  /** Tokens generated in the current turn once its call completed (during the env step). */
  turnGenerated: number;
  /** Tokens generated in committed turns. */
  generatedTokens: number;
  /** The token budget ended or truncated this trajectory (counted once). */
  cutByTokens: boolean;
  /** The environment timeout, armed at admission. */
  timeoutEvent: { cancelled: boolean } | undefined;
  /** The sample's event handlers, made once (not one closure per turn). */
  onGenerated: (job: DecodeJob) => void;
  onEnvStepEnd: () => void;
}

interface SimShard {
  id: string;
  rank: RankId;
  sampleIds: number[];
  /** Samples still running their agent loop on this shard. */
  active: number;
}

interface SimRankState {
  /** The rank's engine: queue, KV cache with its prefixes, prefill and decode. */
  engine: VirtualRank;
}

/** How often an adaptive trigger re-checks (virtual ms). */
const ADAPTIVE_POLL_MS = 1000;

export class Simulator implements SimWorld {
  private readonly queue = new EventQueue();
  private nowMs = 0;
  private readonly cfg: SimulationConfig;
  private readonly ranks: SimRankState[];
  private readonly samples = new Map<number, SimSample>();
  private readonly shards = new Map<string, SimShard>();
  private ledger: SampleLedger = emptyLedger();
  /** The running iteration's state (the program's). */
  private state: IterationState | undefined;
  private version = 0;
  /** Broadcast sync: the group the last iteration left formed. */
  private weightGroup: WeightGroupState | undefined;
  /** The weight version the rollout engines serve (the trainer's version once synced). */
  private servingVersion = 0;
  private completionSeq = 0;
  /** Virtual time and rank of each completion, by completion sequence number. */
  private readonly completionTimes: number[] = [];
  private readonly completionRanks: RankId[] = [];
  /** Per iteration, the completion sequence number of its batch's last sample. */
  private readonly batchLastCompletion = new Map<number, number>();
  /** Per iteration, the completion sequence number the next completion had at its start. */
  private readonly iterationFirstCompletion = new Map<number, number>();
  private trainerOnloaded = false;
  private readonly lanes: LaneRecorder;
  private readonly records: IterationRecord[] = [];
  private readonly totals: SimulationTotals;
  /** Batch watch: candidates and their completions, in completion order. */
  private candidates: Set<number> | undefined;
  private completedCandidates: number[] = [];
  /** Σ active over the shards (samples still in their agent loop), kept as shards change. */
  private activeSamples = 0;
  /** What the ranks reported of their KV capacity (SimWorld.kvCapacityReports). */
  private readonly kvReports = new Map<RankId, number | null>();

  constructor(cfg: SimulationConfig) {
    this.cfg = cfg;
    this.ranks = cfg.layout.ranks.map((rank) => {
      const engine = new VirtualRank(cfg.rankModel, this.queue, () => this.nowMs);
      engine.onBusyChange = () => this.lanes.refreshRank(rank.id);
      return { engine };
    });
    this.lanes = new LaneRecorder(cfg.layout, () => this.nowMs, (rank) => this.ranks[rank]!.engine.running > 0);
    this.totals = {
      virtualMs: 0,
      trainedSamples: 0,
      trainedTokens: 0,
      decodedTokens: 0,
      discardedTokens: 0,
      completedTrajectories: 0,
      dropped: { stale: 0, 'environment-timeout': 0, 'max-turns-exceeded': 0 },
      migrated: 0,
      trainedGeneratedTokens: 0,
      cutByTurnLimit: 0,
      cutByTokenLimit: 0,
      events: 0,
      staleness: {
        lagHistogram: {},
        tokensOverLagLimit: 0,
        trainedGeneratedTokens: 0,
        trainedDecodedTokens: 0,
        discarded: 0,
        discardedDecodedTokens: 0,
        trainedTurns: {},
        decidedTurns: {},
        admittedTurns: {},
        liveAtEnd: 0,
      },
    };
  }

  /** Runs every iteration to the end and returns the measurements. */
  run(): SimulationResult {
    const controller = this.runIterations();
    let wait = controller.next();
    let waitUntil: (() => boolean) | undefined;
    const arm = (): void => {
      waitUntil = undefined;
      while (!wait.done) {
        const request = wait.value;
        if (request.kind === 'sleep') {
          const resume = (): void => {
            wait = controller.next();
            arm();
          };
          this.queue.schedule(this.nowMs + request.ms, resume);
          return;
        }
        if (!request.ready()) {
          waitUntil = request.ready;
          return;
        }
        wait = controller.next();
      }
    };
    arm();
    while (!wait.done) {
      const event = this.queue.pop();
      if (event === undefined) {
        throw new Error(`simulation ${this.cfg.label} stalled at ${this.nowMs} ms: the controller waits and no event is pending (this is a simulator bug)`);
      }
      if (event.at < this.nowMs) throw new Error(`simulation ${this.cfg.label}: event at ${event.at} ms is in the past (now ${this.nowMs} ms)`);
      this.nowMs = event.at;
      this.totals.events++;
      event.run();
      if (waitUntil !== undefined && waitUntil()) {
        wait = controller.next();
        arm();
      }
    }
    this.totals.virtualMs = this.nowMs;
    this.totals.staleness.liveAtEnd = this.ledger.live.length;
    this.lanes.close();
    return {
      label: this.cfg.label,
      strategy: this.cfg.layout.strategy,
      gpus: this.cfg.layout.nodes * this.cfg.layout.gpusPerNode,
      ranks: this.cfg.layout.ranks.length,
      policy: this.cfg.policy,
      staleness: this.cfg.staleness,
      weightSyncMs:
        this.cfg.weightSync === undefined ? this.cfg.cost.weightSyncMs : weightBroadcastMs(this.cfg.cost, Math.max(...this.cfg.layout.ranks.map((rank) => rank.gpus.length))),
      iterations: this.records.map((record) => ({ ...record, batchMarginMs: this.batchMarginMs(record.iteration), orderMarginMs: this.orderMarginMs(record.iteration) })),
      totals: this.totals,
      gpuMsByRole: this.lanes.gpuMsByRole(),
      rankTotals: this.rankTotals(),
      kvCapacityTokensPerRank: this.cfg.rankModel.kvCapacityTokens,
      rankPeakDecodeTokensPerSecond: this.cfg.rankModel.peakDecodeTokensPerSecond,
      gpusPerRank: this.cfg.layout.ranks[0]?.gpus.length ?? 1,
      rankPeakPrefillTokensPerSecond: this.cfg.rankModel.peakPrefillTokensPerSecond,
      trainTokensPerSecondPerGpu: this.cfg.cost.trainTokensPerSecondPerGpu,
      timeline: this.lanes.timeline(this.cfg.label, this.cfg.layout.strategy),
    };
  }

  private batchMarginMs(iteration: number): number | null {
    const last = this.batchLastCompletion.get(iteration);
    const next = last === undefined ? undefined : this.completionTimes[last + 1];
    return next === undefined ? null : next - this.completionTimes[last!]!;
  }

  private orderMarginMs(iteration: number): number | null {
    const first = this.iterationFirstCompletion.get(iteration)!;
    const last = this.batchLastCompletion.get(iteration);
    let shortest: number | null = null;
    for (let seq = first; last !== undefined && seq < last; seq++) {
      if (this.completionRanks[seq] === this.completionRanks[seq + 1]) continue;
      const gap = this.completionTimes[seq + 1]! - this.completionTimes[seq]!;
      if (shortest === null || gap < shortest) shortest = gap;
    }
    return shortest;
  }

  private rankTotals(): RankTotals {
    const totals: RankTotals = { decodedTokens: 0, potentialTokens: 0, prefilledTokens: 0, admitted: 0, queuedAdmissions: 0, evictions: 0 };
    for (const { engine } of this.ranks) {
      totals.decodedTokens += engine.decodedTokens;
      totals.potentialTokens += engine.potentialTokens;
      totals.prefilledTokens += engine.prefilledTokens;
      totals.admitted += engine.admitted;
      totals.queuedAdmissions += engine.queuedAdmissions;
      totals.evictions += engine.evictions;
    }
    return totals;
  }

  // ---------------------------------------------------------------------------------------------
  // The iteration program (src/iteration/program.ts), driven in virtual time
  // ---------------------------------------------------------------------------------------------

  private *runIterations(): Generator<Wait, void, void> {
    for (let iteration = 0; iteration < this.cfg.iterations; iteration++) {
      this.lanes.recording = iteration < this.cfg.timelineIterations;
      this.iterationFirstCompletion.set(iteration, this.completionSeq);
      const state = createIterationState(this.programInput(iteration), this.nowMs);
      this.state = state;
      const result: ProgramResult = yield* runIteration(simEffects(this, this.cfg, state), state);
      this.ledger = state.ledger;
      this.version = result.version;
      this.weightGroup = result.weightGroup;
      this.totals.migrated += result.stats.migrated;
      this.records.push(iterationRecord(result));
    }
  }

  private programInput(iteration: number): ProgramInput {
    const { cfg } = this;
    return {
      layout: cfg.layout,
      iteration,
      fromVersion: this.version,
      ledger: this.ledger,
      batchSize: cfg.batchSize,
      asyncRatio: cfg.asyncRatio,
      maxConcurrentSamples: cfg.maxConcurrentSamples,
      ...(cfg.kvCapacityTokensPerRank === undefined ? {} : { kvCapacityTokensPerRank: cfg.kvCapacityTokensPerRank }),
      maxContextTokens: cfg.maxTokens,
      ...(cfg.staleness.maxTokenLag === undefined ? {} : { maxTokenLag: cfg.staleness.maxTokenLag }),
      lostRanks: [],
      rejoinRanks: [],
      // Nothing fails here: only the run's first iteration recovers, as the pipeline's first of an execution does.
      recoverFromStore: iteration === 0,
      ...(cfg.weightSync === undefined ? {} : { weightSync: cfg.weightSync, ...(this.weightGroup === undefined ? {} : { weightGroup: this.weightGroup }) }),
      options: {
        policy: cfg.policy,
        admission: stalenessAdmission(cfg.staleness.policy),
        adaptive: {
          halfSaturation: cfg.cost.decodeHalfSaturationConcurrency,
          pollMs: ADAPTIVE_POLL_MS,
          maxWaitMs: (batchTokens) => trainStepMs(cfg.cost, batchTokens, cfg.layout.trainGpus.length),
        },
      },
    };
  }

  // ---------------------------------------------------------------------------------------------
  // The world the effects act on (src/simulator/simEffects.ts): samples, shards, ranks, lanes
  // ---------------------------------------------------------------------------------------------

  now(): number {
    return this.nowMs;
  }

  after(ms: number, event: () => void): void {
    this.queue.schedule(this.nowMs + ms, event);
  }

  /** Samples still running their agent loop. */
  runningSamples(): number {
    return this.activeSamples;
  }

  /** What moving each rank's samples would cost: their context to prefill again elsewhere, plus the turns' decoded tokens. */
  inFlightWork(ranks: readonly RankId[]): RankWork[] {
    const work = new Map(ranks.map((rank) => [rank, 0]));
    for (const shard of this.shards.values()) {
      if (!work.has(shard.rank)) continue;
      for (const id of shard.sampleIds) {
        const sample = this.samples.get(id);
        if (sample?.status === 'running' && sample.shard === shard) work.set(shard.rank, work.get(shard.rank)! + this.sampleWork(sample));
      }
    }
    return ranks.map((rank) => ({ rank, work: work.get(rank)! }));
  }

  private sampleWork(sample: SimSample): number {
    const job = sample.job;
    const decoded = job === undefined ? sample.turnGenerated : this.ranks[sample.shard!.rank]!.engine.decodedSoFar(job);
    return sample.committedTokens + sample.partialTokens + decoded;
  }

  everyShardEnded(): boolean {
    return this.activeSamples === 0;
  }

  /** Starts watching the batch candidates: their completions are collected in completion order. */
  watchBatch(candidates: readonly number[]): void {
    this.candidates = new Set(candidates);
    this.completedCandidates = candidates
      .map((id) => this.samples.get(id)!)
      .filter((sample) => sample.status === 'completed')
      .sort((a, b) => a.completionSeq - b.completionSeq)
      .map((sample) => sample.id);
  }

  completedInWatch(): readonly number[] {
    return this.completedCandidates;
  }

  endWatch(): void {
    this.candidates = undefined;
  }

  /**
   * Creates the records of newly admitted samples and arms each one's environment timeout (the
   * sandbox's lifetime runs from admission, queueing included).
   */
  createSamples(ids: readonly number[], version: number): void {
    for (const id of ids) {
      const turns = this.cfg.workload.turnsFor(id);
      countInPlace(this.totals.staleness.admittedTurns, turns);
      if (this.cfg.workload.drawnTurns(id) > this.cfg.maxTurns) this.totals.cutByTurnLimit++;
      const sample: SimSample = {
        id,
        startVersion: version,
        startedAt: this.nowMs,
        turns,
        turn: 0,
        spans: [],
        turnSpans: [],
        decoded: 0,
        committedTokens: this.cfg.workload.promptTokens(id),
        partialTokens: 0,
        status: 'running',
        completionSeq: -1,
        shard: undefined,
        job: undefined,
        callPrefix: 0,
        envEvent: undefined,
        turnGenerated: 0,
        generatedTokens: 0,
        cutByTokens: false,
        timeoutEvent: undefined,
        onGenerated: (job) => this.onGenerated(sample, job),
        onEnvStepEnd: () => this.onEnvStepEnd(sample),
      };
      sample.timeoutEvent = this.queue.schedule(this.nowMs + this.cfg.environmentTimeoutMs, () => this.onEnvironmentTimeout(sample));
      this.samples.set(id, sample);
    }
  }

  launchShard(ref: ShardRef): void {
    if (this.shards.has(ref.id)) throw new Error(`simulation ${this.cfg.label}: shard ${ref.id} launched twice`);
    const shard: SimShard = { id: ref.id, rank: ref.rank, sampleIds: ref.sampleIds, active: ref.sampleIds.length };
    this.shards.set(ref.id, shard);
    this.activeSamples += shard.active;
    for (const sampleId of ref.sampleIds) {
      const sample = this.samples.get(sampleId)!;
      sample.shard = shard;
      this.startTurn(sample);
    }
  }

  /** Whether any of the shards still has a sample in its agent loop. */
  anyActive(refs: readonly ShardRef[]): boolean {
    return refs.some((ref) => (this.shards.get(ref.id)?.active ?? 0) > 0);
  }

  /** Stops the shards' samples where they are (the turn kept as `migration` says); returns each shard's outcome. */
  stopShards(refs: readonly ShardRef[], migration: MigrationPolicy): ShardOutcome[] {
    return refs.map((ref) => {
      const outcome: ShardOutcome = { shardId: ref.id, completed: [], unfinished: [], dropped: [] };
      const shard = this.shards.get(ref.id);
      if (shard === undefined) return outcome;
      for (const id of shard.sampleIds) {
        const sample = this.samples.get(id);
        if (sample === undefined || sample.shard !== shard) continue;
        if (sample.status === 'running') {
          this.interrupt(sample, migration);
          outcome.unfinished.push(id);
        } else if (sample.status === 'dropped') {
          outcome.dropped.push({ id, reason: sample.dropReason! });
        } else {
          outcome.completed.push(id);
        }
        sample.shard = undefined;
      }
      for (const { id } of outcome.dropped) this.samples.delete(id);
      // A batched sample whose shard has now settled is no longer needed.
      for (const id of outcome.completed) if (!this.isLive(id)) this.samples.delete(id);
      this.shards.delete(shard.id);
      this.activeSamples -= shard.active;
      return outcome;
    });
  }

  /** The batch trained from `trainVersion` is sealed: its tokens count as trained; samples no shard holds any more are forgotten. */
  sealBatch(ids: readonly number[], trainVersion: number): { totalTokens: number; totalTokensSquared: number } {
    const { tokens, squaredTokens: squared } = contextSums(ids.map((id) => this.samples.get(id)!.committedTokens));
    if (ids.length > 0) this.batchLastCompletion.set(this.state!.input.iteration, Math.max(...ids.map((id) => this.samples.get(id)!.completionSeq)));
    this.totals.trainedSamples += ids.length;
    this.totals.trainedTokens += tokens;
    this.recordTrained(ids, trainVersion);
    this.totals.trainedGeneratedTokens += ids.reduce((sum, id) => sum + this.samples.get(id)!.generatedTokens, 0);
    for (const id of ids) if (this.samples.get(id)!.shard === undefined) this.samples.delete(id);
    return { totalTokens: tokens, totalTokensSquared: squared };
  }

  /** The staleness figures of a batch trained from `trainVersion` (src/gpu/staleness.ts). */
  private recordTrained(ids: readonly number[], trainVersion: number): void {
    const staleness = this.totals.staleness;
    const limit = this.cfg.staleness.maxTokenLag;
    for (const id of ids) {
      const sample = this.samples.get(id)!;
      staleness.lagHistogram = addTokenLags(staleness.lagHistogram, sample.spans, trainVersion);
      if (limit !== undefined) {
        for (const span of sample.spans) if (trainVersion - span.version > limit) staleness.tokensOverLagLimit += span.tokens;
      }
      staleness.trainedGeneratedTokens += spanTokens(sample.spans);
      staleness.trainedDecodedTokens += sample.decoded;
      countInPlace(staleness.trainedTurns, sample.turns);
      countInPlace(staleness.decidedTurns, sample.turns);
    }
  }

  markStale(ids: readonly number[]): void {
    for (const id of ids) this.markDropped(this.samples.get(id)!, 'stale');
  }

  setPool(next: PoolState): void {
    this.lanes.setPool(next);
  }

  /** Ensures the trainer is onloaded; returns how long that takes (0 if it stayed onloaded). */
  onloadTrainer(trainGpus: readonly GpuId[]): number {
    if (this.trainerOnloaded) return 0;
    this.lanes.setTrainer('onload', trainGpus);
    this.trainerOnloaded = true;
    return this.cfg.cost.trainerOnloadMs;
  }

  setTrainer(activity: 'train' | 'offload' | undefined, trainGpus: readonly GpuId[]): void {
    if (activity === 'offload') this.trainerOnloaded = false;
    this.lanes.setTrainer(activity, trainGpus);
  }

  setSyncing(on: boolean): void {
    this.lanes.setSyncing(on);
  }

  /** The rollout engines serve `version` from now on (the tokens they generate carry it). */
  setServingVersion(version: number): void {
    this.servingVersion = version;
  }

  private isLive(id: number): boolean {
    const live = (this.state?.ledger ?? this.ledger).live;
    // Ascending by id: binary search.
    let lo = 0;
    let hi = live.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const value = live[mid]!.id;
      if (value === id) return true;
      if (value < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  kvCapacityReports(): Map<RankId, number | null> {
    return this.kvReports;
  }

  flushCache(rank: RankId): void {
    this.ranks[rank]!.engine.flushCache();
  }

  // ---------------------------------------------------------------------------------------------
  // The agent loop of one sample (the rollout shard activity's runSample, event-driven)
  // ---------------------------------------------------------------------------------------------

  private startTurn(sample: SimSample): void {
    const { maxTurns, maxTokens, workload } = this.cfg;
    if (this.nowMs - sample.startedAt > this.cfg.environmentTimeoutMs) {
      this.endSample(sample, 'dropped', 'environment-timeout');
      return;
    }
    const context = sample.committedTokens + sample.partialTokens;
    if (sample.turn >= maxTurns || context >= maxTokens) {
      if (context >= maxTokens) this.countTokenCut(sample);
      this.endSample(sample, 'completed');
      return;
    }
    const prefix = sample.partialTokens;
    const { tokens: target, capped } = workload.turnTarget(sample.id, sample.turn, prefix, Math.max(1, maxTokens - context));
    if (capped) this.countTokenCut(sample);
    const rank = this.ranks[sample.shard!.rank]!;
    sample.callPrefix = prefix;
    sample.job = rank.engine.start(sample.id, context, target, sample.onGenerated);
  }

  /** The turn's generate call completed: the environment step follows. */
  private onGenerated(sample: SimSample, job: DecodeJob): void {
    sample.job = undefined;
    this.totals.decodedTokens += job.targetTokens;
    sample.decoded += job.targetTokens;
    pushSpan(sample.turnSpans, this.servingVersion, job.targetTokens);
    sample.turnGenerated = sample.callPrefix + job.targetTokens;
    sample.envEvent = this.queue.schedule(this.nowMs + this.cfg.workload.envStepMs(sample.id, sample.turn), sample.onEnvStepEnd);
  }

  /** The environment step ended: the turn is committed (its generation and observation), the next starts. */
  private onEnvStepEnd(sample: SimSample): void {
    const generated = sample.turnGenerated;
    const turn = sample.turn;
    sample.envEvent = undefined;
    sample.committedTokens += generated + this.cfg.workload.observationTokens(sample.id, turn);
    for (const span of sample.turnSpans) pushSpan(sample.spans, span.version, span.tokens);
    sample.turnSpans.length = 0;
    sample.generatedTokens += generated;
    sample.partialTokens = 0;
    sample.turnGenerated = 0;
    sample.turn = turn + 1;
    if (sample.turn >= sample.turns) this.endSample(sample, 'completed');
    else this.startTurn(sample);
  }

  /** Stops the sample's call or environment step; the turn resumes wherever the sample goes next. */
  private interrupt(sample: SimSample, migration: MigrationPolicy): void {
    if (sample.job !== undefined) {
      const rank = this.ranks[sample.shard!.rank]!;
      const decoded = rank.engine.abort(sample.job);
      sample.job = undefined;
      this.totals.decodedTokens += decoded;
      sample.decoded += decoded;
      const generated = sample.callPrefix + decoded;
      const kept = keptPrefixTokens(migration, generated);
      this.totals.discardedTokens += generated - kept;
      sample.partialTokens = kept;
      // The kept prefix keeps the versions it was generated with; a regenerated turn starts afresh.
      if (kept === 0) sample.turnSpans.length = 0;
      else pushSpan(sample.turnSpans, this.servingVersion, decoded);
    } else if (sample.envEvent !== undefined) {
      // Stopped during the tool call: the whole generated turn is kept; the step runs again.
      sample.envEvent.cancelled = true;
      sample.envEvent = undefined;
      sample.partialTokens = sample.turnGenerated;
      sample.turnGenerated = 0;
    }
  }

  private countTokenCut(sample: SimSample): void {
    if (sample.cutByTokens) return;
    sample.cutByTokens = true;
    this.totals.cutByTokenLimit++;
  }

  /**
   * The environment's sandbox expires a fixed time after the trajectory started, queueing
   * included: a sample still in its agent loop then is stopped where it is (in a generate call or
   * a tool step) and dropped; its shard reports it dropped when it is stopped, as a shard does in
   * the pipeline. One waiting for a shard is dropped when it next starts a turn.
   */
  private onEnvironmentTimeout(sample: SimSample): void {
    sample.timeoutEvent = undefined;
    if (sample.status !== 'running' || sample.shard === undefined) return;
    if (sample.job !== undefined) {
      const decoded = this.ranks[sample.shard.rank]!.engine.abort(sample.job);
      sample.job = undefined;
      this.totals.decodedTokens += decoded;
      this.totals.discardedTokens += decoded;
    } else if (sample.envEvent !== undefined) {
      sample.envEvent.cancelled = true;
      sample.envEvent = undefined;
    }
    this.endSample(sample, 'dropped', 'environment-timeout');
  }

  private endSample(sample: SimSample, status: 'completed' | 'dropped', reason?: DropReason): void {
    const shard = sample.shard!;
    shard.active--;
    this.activeSamples--;
    this.disarmTimeout(sample);
    if (status === 'completed') {
      sample.status = 'completed';
      sample.completionSeq = this.completionSeq++;
      this.completionTimes.push(this.nowMs);
      this.completionRanks.push(shard.rank);
      this.totals.completedTrajectories++;
      if (this.candidates?.has(sample.id) === true) this.completedCandidates.push(sample.id);
    } else {
      this.markDropped(sample, reason!);
    }
  }

  private markDropped(sample: SimSample, reason: DropReason): void {
    this.disarmTimeout(sample);
    sample.status = 'dropped';
    sample.dropReason = reason;
    this.totals.dropped[reason]++;
    const staleness = this.totals.staleness;
    staleness.discarded++;
    staleness.discardedDecodedTokens += sample.decoded;
    countInPlace(staleness.decidedTurns, sample.turns);
    if (reason === 'stale') this.samples.delete(sample.id);
  }

  private disarmTimeout(sample: SimSample): void {
    if (sample.timeoutEvent === undefined) return;
    sample.timeoutEvent.cancelled = true;
    sample.timeoutEvent = undefined;
  }
}

/**
 * appendSpan (src/gpu/staleness.ts) on a sample's own span list, in place: the same spans (a
 * token count joins the last span when its version is the same), without a copy per turn. The
 * sample's lists are never shared, and spans pushed here are new objects.
 */
function pushSpan(spans: VersionSpan[], version: number, tokens: number): void {
  if (tokens === 0) return;
  const last = spans[spans.length - 1];
  if (last !== undefined && last.version === version) last.tokens += tokens;
  else spans.push({ version, tokens });
}

/**
 * One more count of `value` (a turn count the workload drew, an integer >= 1), in the run's own
 * histogram: addCount's copy per sample would cost O(distinct values) for every sample.
 */
function countInPlace(histogram: CountHistogram, value: number): void {
  histogram[value] = (histogram[value] ?? 0) + 1;
}

function iterationRecord(result: ProgramResult): IterationRecord {
  const { stats, decisions } = result;
  return {
    iteration: stats.iteration,
    startMs: stats.startedAtMs,
    endMs: stats.endedAtMs,
    phaseMs: stats.phaseMs,
    batchSamples: stats.batchSamples,
    batchTokens: stats.batchTokens,
    admitted: stats.admitted,
    migrated: stats.migrated,
    released: decisions.released,
    dropped: stats.dropped as Partial<Record<DropReason, number>>,
    carriedOver: stats.carriedOver,
    decisions,
    batchMarginMs: null,
    orderMarginMs: null,
  };
}

export function simulate(cfg: SimulationConfig): SimulationResult {
  return new Simulator(cfg).run();
}
