/**
 * The discrete-event simulator: whole runs in virtual time, with the iteration flow of the
 * iteration workflow (src/workflows/iteration.ts) and the pure core it uses — planShrink,
 * assignLeastLoaded, the sample ledger (admit, assignToShard, settleShard, selectBatch, sealBatch,
 * staleIds, drop), the pool transitions — called, not copied. Timings come from the simulated
 * engines' cost model (src/engines/sim/costFunctions.ts) and workload (WorkloadModel), and the
 * per-sample agent loop follows the rollout shard activity (src/activities/gpuNode.ts).
 *
 * Deterministic for a seed: the workload is a pure function of (seed, sample, turn) and events at
 * one instant run in scheduling order. Pure: no Temporal, no clocks, no I/O.
 */
import { memoryTagShareMs, trainStepMs } from '../engines/sim/costFunctions';
import type { RankModel } from '../engines/sim/roofline';
import type { CostModel } from '../engines/types';
import type { WorkloadModel } from '../engines/sim/workload';
import {
  adaptiveShrinkReady,
  admit,
  assignLeastLoaded,
  assignToShard,
  beginOffload,
  beginOnload,
  beginTraining,
  checkLedgerInvariants,
  checkPoolInvariants,
  checkPostcondition,
  completeOffload,
  completeOnload,
  drop,
  emptyLedger,
  endTraining,
  initialPoolState,
  keptPrefixTokens,
  loadsByRank,
  planShrink,
  planShrinkByLeastWork,
  samplesByState,
  sealBatch,
  selectBatch,
  settleShard,
  staleIds,
  trainGroupIsMovable,
  withTrainGroup,
  type DropReason,
  type PoolLayout,
  type PoolState,
  type RankId,
  type SampleLedger,
  type SchedulingPolicy,
  type ShrinkPlan,
} from '../gpu';
import type { Phase } from '../pipeline/types';
import type { Timeline, TimelineRole } from '../timeline/types';
import { EventQueue } from './eventQueue';
import { LaneRecorder } from './lanes';
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
  /** Latency of the control plane itself, in simulated ms (see ControlPlaneLatency). */
  controlPlane: ControlPlaneLatency;
  /** Timeline segments are recorded for the first this-many iterations (0: none). */
  timelineIterations: number;
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
  /** The cost model's weight-sync time of one rank (all ranks sync in parallel). */
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

type Wait = { kind: 'sleep'; ms: number } | { kind: 'until'; ready: () => boolean };

interface SimSample {
  id: number;
  startVersion: number;
  startedAt: number;
  turns: number;
  /** Turns committed so far (the next turn's index). */
  turn: number;
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
  /** Context and prefix of the running call (to account an abort). */
  callContext: number;
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

export class Simulator {
  private readonly queue = new EventQueue();
  private nowMs = 0;
  private readonly cfg: SimulationConfig;
  private readonly ranks: SimRankState[];
  private readonly samples = new Map<number, SimSample>();
  private readonly shards = new Map<string, SimShard>();
  private ledger: SampleLedger = emptyLedger();
  private pool: PoolState;
  private iterLayout: PoolLayout;
  private version = 0;
  private shardSerial = 0;
  private completionSeq = 0;
  private trainerOnloaded = false;
  private readonly lanes: LaneRecorder;
  private readonly records: IterationRecord[] = [];
  private readonly totals: SimulationTotals;
  /** Batch watch: candidates and their completions, in completion order. */
  private candidates: Set<number> | undefined;
  private completedCandidates: number[] = [];

  constructor(cfg: SimulationConfig) {
    this.cfg = cfg;
    this.iterLayout = cfg.layout;
    this.pool = initialPoolState(cfg.layout);
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
    this.lanes.close();
    return {
      label: this.cfg.label,
      strategy: this.cfg.layout.strategy,
      gpus: this.cfg.layout.nodes * this.cfg.layout.gpusPerNode,
      ranks: this.cfg.layout.ranks.length,
      policy: this.cfg.policy,
      weightSyncMs: this.cfg.cost.weightSyncMs,
      iterations: this.records,
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

  // ---------------------------------------------------------------------------------------------
  // The iteration flow (mirrors iterationWorkflow step by step)
  // ---------------------------------------------------------------------------------------------

  private *runIterations(): Generator<Wait, void, void> {
    for (let iteration = 0; iteration < this.cfg.iterations; iteration++) {
      this.lanes.recording = iteration < this.cfg.timelineIterations;
      yield* this.runIteration(iteration);
    }
  }

  private *runIteration(iteration: number): Generator<Wait, void, void> {
    const { cost, layout } = this.cfg;
    const fromVersion = this.version;
    const record: IterationRecord = {
      iteration,
      startMs: this.nowMs,
      endMs: 0,
      phaseMs: {},
      batchSamples: 0,
      batchTokens: 0,
      admitted: 0,
      migrated: 0,
      released: [],
      dropped: {},
      carriedOver: 0,
    };
    let phase: Phase = 'starting';
    let phaseStart = this.nowMs;
    const enterPhase = (next: Phase): void => {
      record.phaseMs[phase] = (record.phaseMs[phase] ?? 0) + (this.nowMs - phaseStart);
      phase = next;
      phaseStart = this.nowMs;
    };
    const allRanks = layout.ranks.map((rank) => rank.id);
    const { activityRoundTripMs } = this.cfg.controlPlane;
    const roundTrips = (count: number): Wait => ({ kind: 'sleep', ms: count * activityRoundTripMs });

    // ---- 0. carry-over: drop what the async ratio no longer admits
    const stale = staleIds(this.ledger, fromVersion, this.cfg.asyncRatio);
    if (stale.length > 0) {
      this.ledger = drop(this.ledger, stale, 'stale');
      for (const id of stale) this.markDropped(this.samples.get(id)!, 'stale');
      this.countDrops(record, 'stale', stale.length);
      yield roundTrips(1);
    }
    // describeSamples and readSealedBatch (recovery bookkeeping), issued together: one round trip
    yield roundTrips(1);

    // ---- 1. full rollout until the batch threshold
    enterPhase('rollout');
    this.placeAndLaunch(samplesByState(this.ledger).waiting, allRanks);
    if (this.refill(allRanks, this.cfg.maxConcurrentSamples, record)) yield roundTrips(1);
    let ready: number[] | undefined;
    while (ready === undefined) {
      const states = samplesByState(this.ledger);
      const candidates = [...states.running, ...states.completed];
      checkPostcondition('batch threshold: enough live samples to fill a batch', this.shards.size > 0 || candidates.length >= this.cfg.batchSize, () =>
        JSON.stringify({ candidates: candidates.length, batchSize: this.cfg.batchSize }),
      );
      this.watchBatch(candidates);
      yield { kind: 'until', ready: () => this.completedCandidates.length >= this.cfg.batchSize || this.everyShardEnded() };
      // awaitBatch's answer (or the shards' ends) reaches the workflow.
      yield roundTrips(1);
      if (this.completedCandidates.length >= this.cfg.batchSize) {
        ready = selectBatch(this.ledger, this.completedCandidates, this.cfg.batchSize);
      } else {
        yield* this.stopShardsWithLatency([...this.shards.values()], record);
        this.placeAndLaunch(samplesByState(this.ledger).waiting, allRanks);
        if (this.refill(allRanks, this.cfg.maxConcurrentSamples, record)) yield roundTrips(1);
      }
    }
    this.candidates = undefined;
    // sealBatch
    yield roundTrips(1);
    this.ledger = sealBatch(this.ledger, ready);
    record.batchSamples = ready.length;
    record.batchTokens = ready.reduce((sum, id) => sum + this.samples.get(id)!.committedTokens, 0);
    this.totals.trainedSamples += ready.length;
    this.totals.trainedTokens += record.batchTokens;
    this.totals.trainedGeneratedTokens += ready.reduce((sum, id) => sum + this.samples.get(id)!.generatedTokens, 0);
    for (const id of ready) if (this.samples.get(id)!.shard === undefined) this.samples.delete(id);

    // ---- 1b. adaptive trigger: wait while a shrink would overload the kept ranks
    if (this.cfg.policy.trigger === 'adaptive' && layout.strategy === 'multiplexed') {
      const keepCount = layout.ranks.length - layout.shrinkRanks.length;
      const readyAt = this.nowMs;
      const maxWaitMs = trainStepMs(cost, record.batchTokens, layout.trainGpus.length);
      while (
        !adaptiveShrinkReady({
          // Samples still in their agent loop (the ledger changes only when shards settle).
          running: [...this.shards.values()].reduce((sum, shard) => sum + shard.active, 0),
          keepRanks: keepCount,
          allRanks: layout.ranks.length,
          halfSaturation: cost.decodeHalfSaturationConcurrency,
          waitedMs: this.nowMs - readyAt,
          maxWaitMs,
        })
      ) {
        yield { kind: 'sleep', ms: ADAPTIVE_POLL_MS };
      }
    }

    // ---- 2. shrink: release the train group's ranks
    const plan = this.planShrink();
    const { release, keep } = plan;
    record.released = release;
    if (release.length > 0) this.setPool(beginOffload(this.iterLayout, this.pool, release));
    enterPhase('shrink');
    if (release.length > 0) {
      const releasedSet = new Set(release);
      const moved = yield* this.stopShardsWithLatency([...this.shards.values()].filter((shard) => releasedSet.has(shard.rank)), record);
      record.migrated = moved.length;
      this.totals.migrated += moved.length;
      if (keep.length > 0) this.placeAndLaunch(moved, keep);
      yield { kind: 'sleep', ms: cost.offloadMs + activityRoundTripMs };
      for (const rank of release) this.flushCache(rank);
      this.setPool(completeOffload(this.iterLayout, this.pool, release));
    }
    if (keep.length > 0 && this.cfg.asyncRatio >= 1 && this.refill(keep, this.cfg.maxConcurrentSamples - this.cfg.batchSize, record)) yield roundTrips(1);

    // ---- 3. train ‖ long tail
    this.setPool(beginTraining(this.iterLayout, this.pool));
    enterPhase('train');
    const trainerShared = this.iterLayout.shrinkRanks.length > 0;
    // trainerOnload is called every iteration (a no-op when the trainer stayed onloaded).
    if (!this.trainerOnloaded) {
      this.lanes.setTrainer('onload', this.iterLayout.trainGpus);
      yield { kind: 'sleep', ms: cost.trainerOnloadMs };
      this.trainerOnloaded = true;
    }
    yield roundTrips(1);
    this.lanes.setTrainer('train', this.iterLayout.trainGpus);
    yield { kind: 'sleep', ms: trainStepMs(cost, record.batchTokens, this.iterLayout.trainGpus.length) + activityRoundTripMs };
    this.version = fromVersion + 1;
    if (trainerShared) {
      this.lanes.setTrainer('offload', this.iterLayout.trainGpus);
      yield { kind: 'sleep', ms: cost.trainerOffloadMs + activityRoundTripMs };
      this.trainerOnloaded = false;
    }
    this.lanes.setTrainer(undefined, this.iterLayout.trainGpus);
    this.setPool(endTraining(this.iterLayout, this.pool));

    // ---- 4. stop and checkpoint every shard
    enterPhase('stop');
    yield* this.stopShardsWithLatency([...this.shards.values()], record);

    // ---- 5. weight sync, then expand
    enterPhase('sync');
    if (release.length > 0) {
      this.setPool(beginOnload(this.iterLayout, this.pool, release));
      yield { kind: 'sleep', ms: memoryTagShareMs(cost, 'weights', cost.onloadMs) + activityRoundTripMs };
    }
    this.lanes.setSyncing(true);
    yield { kind: 'sleep', ms: cost.weightSyncMs + activityRoundTripMs };
    this.lanes.setSyncing(false);
    // KV computed under the old weights is stale: every engine flushes its prefix cache.
    for (const rank of allRanks) this.flushCache(rank);
    enterPhase('expand');
    if (release.length > 0) {
      yield { kind: 'sleep', ms: memoryTagShareMs(cost, 'kv_cache', cost.onloadMs) + activityRoundTripMs };
      this.setPool(completeOnload(this.iterLayout, this.pool, release));
    }
    checkPoolInvariants(this.iterLayout, this.pool);
    checkLedgerInvariants(this.ledger);
    enterPhase('done');
    this.iterLayout = layout;
    record.carriedOver = this.ledger.live.length;
    record.endMs = this.nowMs;
    this.records.push(record);
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

  /** The shrink plan of this iteration under the release policy (the configured train group unless it may move). */
  private planShrink(): ShrinkPlan {
    const { layout, policy } = this.cfg;
    if (policy.release === 'least-work' && trainGroupIsMovable(layout)) {
      const work = layout.ranks.map((rank) => ({ rank: rank.id, work: 0 }));
      for (const shard of this.shards.values()) {
        for (const id of shard.sampleIds) {
          const sample = this.samples.get(id);
          if (sample?.status === 'running' && sample.shard === shard) work[shard.rank]!.work += this.inFlightWork(sample);
        }
      }
      const plan = planShrinkByLeastWork(layout, work);
      this.iterLayout = withTrainGroup(layout, plan);
      return plan;
    }
    this.iterLayout = layout;
    return planShrink(layout);
  }

  /** What moving the sample would cost: its context to prefill again elsewhere, plus the turn's decoded tokens. */
  private inFlightWork(sample: SimSample): number {
    const job = sample.job;
    const decoded = job === undefined ? sample.turnGenerated : this.ranks[sample.shard!.rank]!.engine.decodedSoFar(job);
    return sample.committedTokens + sample.partialTokens + decoded;
  }

  private setPool(next: PoolState): void {
    this.pool = next;
    this.lanes.setPool(next);
  }

  private everyShardEnded(): boolean {
    for (const shard of this.shards.values()) if (shard.active > 0) return false;
    return true;
  }

  private watchBatch(candidates: readonly number[]): void {
    this.candidates = new Set(candidates);
    this.completedCandidates = candidates
      .map((id) => this.samples.get(id)!)
      .filter((sample) => sample.status === 'completed')
      .sort((a, b) => a.completionSeq - b.completionSeq)
      .map((sample) => sample.id);
  }

  private countDrops(record: IterationRecord, reason: DropReason, count: number): void {
    record.dropped[reason] = (record.dropped[reason] ?? 0) + count;
  }

  // ---------------------------------------------------------------------------------------------
  // Placement, shards and admission (the workflow's launchShard / stopShards / refill)
  // ---------------------------------------------------------------------------------------------

  private placeAndLaunch(ids: readonly number[], ranks: readonly RankId[]): void {
    if (ids.length === 0 || ranks.length === 0) return;
    for (const placement of assignLeastLoaded(ids, loadsByRank(this.ledger, ranks))) this.launchShard(placement.rank, placement.sampleIds);
  }

  /** Admits up to `target` live samples onto `ranks`; true if any were admitted (admitSamples ran). */
  private refill(ranks: readonly RankId[], target: number, record: IterationRecord): boolean {
    if (ranks.length === 0) return false;
    const room = target - this.ledger.live.length;
    if (room <= 0) return false;
    const admitted = admit(this.ledger, room, this.version);
    this.ledger = admitted.ledger;
    record.admitted += admitted.ids.length;
    for (const id of admitted.ids) {
      if (this.cfg.workload.drawnTurns(id) > this.cfg.maxTurns) this.totals.cutByTurnLimit++;
      const sample: SimSample = {
        id,
        startVersion: this.version,
        startedAt: this.nowMs,
        turns: this.cfg.workload.turnsFor(id),
        turn: 0,
        committedTokens: this.cfg.workload.promptTokens(id),
        partialTokens: 0,
        status: 'running',
        completionSeq: -1,
        shard: undefined,
        job: undefined,
        callContext: 0,
        callPrefix: 0,
        envEvent: undefined,
        turnGenerated: 0,
        generatedTokens: 0,
        cutByTokens: false,
        timeoutEvent: undefined,
      };
      sample.timeoutEvent = this.queue.schedule(this.nowMs + this.cfg.environmentTimeoutMs, () => this.onEnvironmentTimeout(sample));
      this.samples.set(id, sample);
    }
    this.placeAndLaunch(admitted.ids, ranks);
    return true;
  }

  /**
   * The workflow's stopShards: the shards run on until the direct stop reaches them (one activity
   * round trip), then stop where they are; settleShards is one more round trip.
   */
  private *stopShardsWithLatency(selected: readonly SimShard[], record: IterationRecord): Generator<Wait, number[], void> {
    if (selected.length === 0) return [];
    // A shard whose samples have all ended has returned already: nothing to cancel.
    if (selected.some((shard) => shard.active > 0)) yield { kind: 'sleep', ms: this.cfg.controlPlane.shardStopMs };
    const unfinished = this.stopShards(selected.filter((shard) => this.shards.has(shard.id)), record);
    yield { kind: 'sleep', ms: this.cfg.controlPlane.activityRoundTripMs };
    return unfinished;
  }

  private launchShard(rank: RankId, sampleIds: number[]): void {
    const id = `s${this.shardSerial++}-r${rank}`;
    this.ledger = assignToShard(this.ledger, sampleIds, rank, id);
    const shard: SimShard = { id, rank, sampleIds, active: sampleIds.length };
    this.shards.set(id, shard);
    for (const sampleId of sampleIds) {
      const sample = this.samples.get(sampleId)!;
      sample.shard = shard;
      this.startTurn(sample);
    }
  }

  /** Stops the shards' samples where they are, settles the shards in the ledger; returns the unfinished ids. */
  private stopShards(selected: readonly SimShard[], record: IterationRecord): number[] {
    const unfinished: number[] = [];
    for (const shard of selected) {
      const mine: number[] = [];
      const dropped = new Map<DropReason, number[]>();
      for (const id of shard.sampleIds) {
        const sample = this.samples.get(id);
        if (sample === undefined || sample.shard !== shard) continue;
        if (sample.status === 'running') {
          this.interrupt(sample);
          mine.push(id);
        } else if (sample.status === 'dropped') {
          dropped.set(sample.dropReason!, [...(dropped.get(sample.dropReason!) ?? []), id]);
        }
        sample.shard = undefined;
      }
      this.ledger = settleShard(this.ledger, shard.id, mine);
      for (const [reason, ids] of dropped) {
        this.ledger = drop(this.ledger, ids, reason);
        this.countDrops(record, reason, ids.length);
        for (const id of ids) this.samples.delete(id);
      }
      for (const id of shard.sampleIds) {
        const sample = this.samples.get(id);
        // A batched sample whose shard has now settled is no longer needed.
        if (sample !== undefined && sample.status === 'completed' && !this.isLive(id)) this.samples.delete(id);
      }
      this.shards.delete(shard.id);
      unfinished.push(...mine);
    }
    return unfinished;
  }

  private isLive(id: number): boolean {
    const live = this.ledger.live;
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

  private flushCache(rank: RankId): void {
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
    const wanted = Math.max(0, workload.completionTokens(sample.id, sample.turn) - prefix);
    const target = Math.min(wanted, Math.max(1, maxTokens - context));
    if (target < wanted) this.countTokenCut(sample);
    const rank = this.ranks[sample.shard!.rank]!;
    sample.callContext = context;
    sample.callPrefix = prefix;
    sample.job = rank.engine.start(sample.id, context, target, (job) => {
      sample.job = undefined;
      this.totals.decodedTokens += job.targetTokens;
      this.afterGenerate(sample, prefix + job.targetTokens);
    });
  }

  private afterGenerate(sample: SimSample, generated: number): void {
    sample.turnGenerated = generated;
    const turn = sample.turn;
    sample.envEvent = this.queue.schedule(this.nowMs + this.cfg.workload.envStepMs(sample.id, turn), () => {
      sample.envEvent = undefined;
      sample.committedTokens += generated + this.cfg.workload.observationTokens(sample.id, turn);
      sample.generatedTokens += generated;
      sample.partialTokens = 0;
      sample.turnGenerated = 0;
      sample.turn = turn + 1;
      if (sample.turn >= sample.turns) this.endSample(sample, 'completed');
      else this.startTurn(sample);
    });
  }

  /** Stops the sample's call or environment step; the turn resumes wherever the sample goes next. */
  private interrupt(sample: SimSample): void {
    if (sample.job !== undefined) {
      const rank = this.ranks[sample.shard!.rank]!;
      const decoded = rank.engine.abort(sample.job);
      sample.job = undefined;
      this.totals.decodedTokens += decoded;
      const generated = sample.callPrefix + decoded;
      const kept = keptPrefixTokens(this.cfg.policy.migration, generated);
      this.totals.discardedTokens += generated - kept;
      sample.partialTokens = kept;
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
   * a tool step) and dropped. One waiting for a shard is dropped when it next starts a turn.
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
    if (sample.timeoutEvent !== undefined) {
      sample.timeoutEvent.cancelled = true;
      sample.timeoutEvent = undefined;
    }
    if (status === 'completed') {
      sample.status = 'completed';
      sample.completionSeq = this.completionSeq++;
      this.totals.completedTrajectories++;
      if (this.candidates?.has(sample.id) === true) this.completedCandidates.push(sample.id);
    } else {
      this.markDropped(sample, reason!);
    }
  }

  private markDropped(sample: SimSample, reason: DropReason): void {
    if (sample.timeoutEvent !== undefined) {
      sample.timeoutEvent.cancelled = true;
      sample.timeoutEvent = undefined;
    }
    sample.status = 'dropped';
    sample.dropReason = reason;
    this.totals.dropped[reason]++;
    if (reason === 'stale') this.samples.delete(sample.id);
  }
}

export function simulate(cfg: SimulationConfig): SimulationResult {
  return new Simulator(cfg).run();
}
