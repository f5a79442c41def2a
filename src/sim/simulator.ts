/**
 * The discrete-event simulator: whole runs in virtual time. It keeps no flow of its own: every
 * iteration is the iteration program (src/iteration/program.ts) that the iteration workflow runs,
 * with effects carried out on virtual ranks (src/sim/simEffects.ts). Timings come from the simulated
 * engines' cost model (src/engines/sim/costFunctions.ts) and workload (WorkloadModel), and the
 * per-sample agent loop follows the rollout shard activity (src/activities/gpuNode.ts).
 *
 * Deterministic for a seed: the workload is a pure function of (seed, sample, turn) and events at
 * one instant run in scheduling order. Pure: no Temporal, no clocks, no I/O.
 */
import { prefillMs, trainStepMs } from '../engines/sim/costFunctions';
import type { CostModel } from '../engines/types';
import type { WorkloadModel } from '../engines/sim/workload';
import {
  emptyLedger,
  keptPrefixTokens,
  type DropReason,
  type GpuId,
  type MigrationPolicy,
  type PoolLayout,
  type PoolState,
  type RankId,
  type RankWork,
  type SampleLedger,
  type SchedulingPolicy,
} from '../gpu';
import type { ShardRef } from '../iteration/effects';
import { runIteration, type ProgramResult } from '../iteration/program';
import { createIterationState, DEFAULT_ADMISSION, type IterationState, type ProgramInput } from '../iteration/state';
import type { IterationDecisions, Phase, ShardOutcome } from '../pipeline/types';
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
  /** The batch, the released ranks and the migrated samples (the same program decides them in the pipeline). */
  decisions: IterationDecisions;
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
  events: number;
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
  timeline: Timeline;
}

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
}

interface SimShard {
  id: string;
  rank: RankId;
  sampleIds: number[];
  /** Samples still running their agent loop on this shard. */
  active: number;
}

interface SimRankState {
  engine: VirtualRank;
  /** Prefix cache: per sample, the context length whose KV the rank holds. Replaced on flush. */
  cache: Map<number, number>;
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
    this.ranks = cfg.layout.ranks.map((rank) => {
      const engine = new VirtualRank(cfg.cost, this.queue, () => this.nowMs);
      engine.onBusyChange = () => this.lanes.refreshRank(rank.id);
      return { engine, cache: new Map() };
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
      timeline: this.lanes.timeline(this.cfg.label, this.cfg.layout.strategy),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // The iteration program (src/iteration/program.ts), driven in virtual time
  // ---------------------------------------------------------------------------------------------

  private *runIterations(): Generator<Wait, void, void> {
    for (let iteration = 0; iteration < this.cfg.iterations; iteration++) {
      this.lanes.recording = iteration < this.cfg.timelineIterations;
      const state = createIterationState(this.programInput(iteration), this.nowMs);
      this.state = state;
      const result: ProgramResult = yield* runIteration(simEffects(this, this.cfg, state), state);
      this.ledger = state.ledger;
      this.version = result.version;
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
      lostRanks: [],
      rejoinRanks: [],
      options: {
        policy: cfg.policy,
        admission: DEFAULT_ADMISSION,
        adaptive: {
          halfSaturation: cfg.cost.decodeHalfSaturationConcurrency,
          pollMs: ADAPTIVE_POLL_MS,
          maxWaitMs: (batchTokens) => trainStepMs(cfg.cost, batchTokens, cfg.layout.trainGpus.length),
        },
      },
    };
  }

  // ---------------------------------------------------------------------------------------------
  // The world the effects act on (src/sim/simEffects.ts): samples, shards, ranks, lanes
  // ---------------------------------------------------------------------------------------------

  now(): number {
    return this.nowMs;
  }

  after(ms: number, event: () => void): void {
    this.queue.schedule(this.nowMs + ms, event);
  }

  /** Samples still running their agent loop. */
  runningSamples(): number {
    let running = 0;
    for (const shard of this.shards.values()) running += shard.active;
    return running;
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
    for (const shard of this.shards.values()) if (shard.active > 0) return false;
    return true;
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

  /** Creates the records of newly admitted samples. */
  createSamples(ids: readonly number[], version: number): void {
    for (const id of ids) {
      this.samples.set(id, {
        id,
        startVersion: version,
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
      });
    }
  }

  launchShard(ref: ShardRef): void {
    const shard: SimShard = { id: ref.id, rank: ref.rank, sampleIds: ref.sampleIds, active: ref.sampleIds.length };
    this.shards.set(ref.id, shard);
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
      return outcome;
    });
  }

  /** The batch is sealed: its tokens count as trained; samples no shard holds any more are forgotten. */
  sealBatch(ids: readonly number[]): number {
    const tokens = ids.reduce((sum, id) => sum + this.samples.get(id)!.committedTokens, 0);
    this.totals.trainedSamples += ids.length;
    this.totals.trainedTokens += tokens;
    for (const id of ids) if (this.samples.get(id)!.shard === undefined) this.samples.delete(id);
    return tokens;
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

  flushCache(rank: RankId): void {
    this.ranks[rank]!.cache = new Map();
  }

  // ---------------------------------------------------------------------------------------------
  // The agent loop of one sample (the rollout shard activity's runSample, event-driven)
  // ---------------------------------------------------------------------------------------------

  private startTurn(sample: SimSample): void {
    const { maxTurns, maxTokens, workload, cost } = this.cfg;
    if (this.nowMs - sample.startedAt > this.cfg.environmentTimeoutMs) {
      this.endSample(sample, 'dropped', 'environment-timeout');
      return;
    }
    const context = sample.committedTokens + sample.partialTokens;
    if (sample.turn >= maxTurns || context >= maxTokens) {
      this.endSample(sample, 'completed');
      return;
    }
    const prefix = sample.partialTokens;
    const wanted = Math.max(0, workload.completionTokens(sample.id, sample.turn) - prefix);
    const target = Math.min(wanted, Math.max(1, maxTokens - context));
    const rank = this.ranks[sample.shard!.rank]!;
    const cached = Math.min(rank.cache.get(sample.id) ?? 0, context);
    rank.cache.set(sample.id, context);
    sample.callContext = context;
    sample.callPrefix = prefix;
    const cache = rank.cache;
    sample.job = rank.engine.start(sample.id, target, prefillMs(cost, context - cached), (job) => {
      sample.job = undefined;
      if (rank.cache === cache) cache.set(sample.id, context + job.targetTokens);
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
      sample.partialTokens = 0;
      sample.turnGenerated = 0;
      sample.turn = turn + 1;
      if (sample.turn >= sample.turns) this.endSample(sample, 'completed');
      else this.startTurn(sample);
    });
  }

  /** Stops the sample's call or environment step; the turn resumes wherever the sample goes next. */
  private interrupt(sample: SimSample, migration: MigrationPolicy): void {
    if (sample.job !== undefined) {
      const rank = this.ranks[sample.shard!.rank]!;
      const decoded = rank.engine.abort(sample.job);
      sample.job = undefined;
      this.totals.decodedTokens += decoded;
      rank.cache.set(sample.id, sample.callContext + decoded);
      const generated = sample.callPrefix + decoded;
      const kept = keptPrefixTokens(migration, generated);
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

  private endSample(sample: SimSample, status: 'completed' | 'dropped', reason?: DropReason): void {
    const shard = sample.shard!;
    shard.active--;
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
    sample.status = 'dropped';
    sample.dropReason = reason;
    this.totals.dropped[reason]++;
    if (reason === 'stale') this.samples.delete(sample.id);
  }
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
  };
}

export function simulate(cfg: SimulationConfig): SimulationResult {
  return new Simulator(cfg).run();
}
