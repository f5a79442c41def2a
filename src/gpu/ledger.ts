/**
 * The sample ledger: the control plane's truth of where every live sample is. Sample bodies live
 * in the trajectory store; the ledger holds ids, states and versions only, in workflow state.
 *
 *   admit → waiting ─assignToShard→ running ─settleShard→ completed | waiting (unfinished)
 *   running | completed ─sealBatch→ (trained: leaves the ledger, counted)
 *   waiting | completed ─drop→      (dropped: leaves the ledger, counted by reason)
 *
 * Conservation (checked after every operation): admitted = live + batched + Σ dropped.
 */
import type { RankId } from './layout';
import type { TrainedContext } from './staleness';
import { checkIntRange, checkNoDuplicates, checkPostcondition, ValidationError } from '../validation/patterns';

export const DROP_REASONS = ['stale', 'environment-timeout', 'max-turns-exceeded'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type SampleState = 'waiting' | 'running' | 'completed';

export interface LiveSample {
  id: number;
  /** Weight version at admission: the sample's policy version for the staleness bound. */
  startVersion: number;
  state: SampleState;
  /** Set exactly when running. */
  rank?: RankId;
  shardId?: string;
}

export interface SampleLedger {
  nextSampleId: number;
  /** Live samples, ascending by id. */
  live: LiveSample[];
  counters: {
    admitted: number;
    batched: number;
    dropped: Record<DropReason, number>;
    /**
     * The trained samples whose contexts are known, with Σ and Σ² of their final contexts in tokens
     * (sealed batches' figures): what the KV cap estimates a rolling sample's KV from
     * (src/gpu/staleness.ts). Absent until such a batch is sealed (and in ledgers of runs started before).
     */
    trainedContext?: TrainedContext;
  };
}

export function emptyLedger(): SampleLedger {
  return { nextSampleId: 0, live: [], counters: { admitted: 0, batched: 0, dropped: { stale: 0, 'environment-timeout': 0, 'max-turns-exceeded': 0 } } };
}

function copy(ledger: SampleLedger): SampleLedger {
  return {
    nextSampleId: ledger.nextSampleId,
    live: ledger.live.map((sample) => ({ ...sample })),
    counters: {
      admitted: ledger.counters.admitted,
      batched: ledger.counters.batched,
      dropped: { ...ledger.counters.dropped },
      ...(ledger.counters.trainedContext === undefined ? {} : { trainedContext: { ...ledger.counters.trainedContext } }),
    },
  };
}

function index(ledger: SampleLedger): Map<number, LiveSample> {
  return new Map(ledger.live.map((sample) => [sample.id, sample]));
}

function requireStates(ledger: SampleLedger, subject: string, ids: readonly number[], allowed: readonly SampleState[]): void {
  checkNoDuplicates(subject, ids);
  const byId = index(ledger);
  const wrong = ids
    .map((id) => ({ id, state: byId.get(id)?.state ?? 'not live' }))
    .filter(({ state }) => !(allowed as readonly string[]).includes(state));
  if (wrong.length > 0) {
    throw new ValidationError('VAL_SUBSET', subject, JSON.stringify(wrong), `samples must be live and ${allowed.join(' or ')}`);
  }
}

/** Admits `count` new samples at weight `version`; returns their ids. */
/** Most live samples a run may hold at once (rollout.maxConcurrentSamples is checked against it). */
export const MAX_LIVE_SAMPLES = 1_000_000;

export function admit(ledger: SampleLedger, count: number, version: number): { ledger: SampleLedger; ids: number[] } {
  checkIntRange('admit: count', count, 0, MAX_LIVE_SAMPLES);
  checkIntRange('admit: version', version, 0, Number.MAX_SAFE_INTEGER);
  const next = copy(ledger);
  const ids = Array.from({ length: count }, (_, i) => ledger.nextSampleId + i);
  for (const id of ids) next.live.push({ id, startVersion: version, state: 'waiting' });
  next.nextSampleId += count;
  next.counters.admitted += count;
  checkLedgerInvariants(next);
  return { ledger: next, ids };
}

/** Waiting samples that turn out to have completed (a failed attempt finished them). */
export function markCompleted(ledger: SampleLedger, ids: readonly number[]): SampleLedger {
  requireStates(ledger, 'markCompleted', ids, ['waiting']);
  const next = copy(ledger);
  const done = new Set(ids);
  for (const sample of next.live) if (done.has(sample.id)) sample.state = 'completed';
  checkLedgerInvariants(next);
  return next;
}

/** A sample a failed attempt of the same iteration admitted, as the store has it. */
export interface AdoptedSample {
  id: number;
  startVersion: number;
  /** running → waiting (its shard is gone); completed stays completed (batched ones get sealed next). */
  state: 'waiting' | 'completed';
}

/**
 * Takes in samples that an earlier, failed attempt of this iteration admitted (ids from
 * nextSampleId on), so a retry neither loses them nor issues their ids again.
 */
export function adoptSamples(ledger: SampleLedger, samples: readonly AdoptedSample[]): SampleLedger {
  checkNoDuplicates('adoptSamples', samples, (sample) => sample.id);
  const early = samples.filter((sample) => sample.id < ledger.nextSampleId).map((sample) => sample.id);
  if (early.length > 0) {
    throw new ValidationError('VAL_INT_RANGE', 'adoptSamples: ids', JSON.stringify(early), `must be >= nextSampleId ${ledger.nextSampleId} (not yet in the ledger)`);
  }
  const next = copy(ledger);
  for (const sample of [...samples].sort((a, b) => a.id - b.id)) {
    checkIntRange(`adoptSamples: start version of ${sample.id}`, sample.startVersion, 0, Number.MAX_SAFE_INTEGER);
    next.live.push({ id: sample.id, startVersion: sample.startVersion, state: sample.state });
    next.nextSampleId = Math.max(next.nextSampleId, sample.id + 1);
    next.counters.admitted += 1;
  }
  checkLedgerInvariants(next);
  return next;
}

/** Starts waiting samples as one shard on `rank`. The shard id must be new. */
export function assignToShard(ledger: SampleLedger, ids: readonly number[], rank: RankId, shardId: string): SampleLedger {
  checkIntRange('assignToShard: rank', rank, 0, Number.MAX_SAFE_INTEGER);
  requireStates(ledger, `assignToShard ${shardId}`, ids, ['waiting']);
  if (ledger.live.some((sample) => sample.shardId === shardId)) {
    throw new ValidationError('VAL_NO_DUPLICATES', 'assignToShard: shard id', JSON.stringify(shardId), 'shard id already in use');
  }
  const next = copy(ledger);
  const wanted = new Set(ids);
  for (const sample of next.live) {
    if (wanted.has(sample.id)) {
      sample.state = 'running';
      sample.rank = rank;
      sample.shardId = shardId;
    }
  }
  checkLedgerInvariants(next);
  return next;
}

/**
 * A shard has ended: its `unfinished` samples wait for a new placement, its other live samples
 * completed. Idempotent for a shard with nothing left (an unknown or settled shard with no
 * unfinished samples is a no-op).
 */
export function settleShard(ledger: SampleLedger, shardId: string, unfinished: readonly number[]): SampleLedger {
  checkNoDuplicates(`settleShard ${shardId}: unfinished`, unfinished);
  const onShard = new Set(ledger.live.filter((sample) => sample.shardId === shardId).map((sample) => sample.id));
  const strays = unfinished.filter((id) => !onShard.has(id));
  if (strays.length > 0) {
    throw new ValidationError('VAL_SUBSET', `settleShard ${shardId}: unfinished`, JSON.stringify(strays), "not running on this shard");
  }
  const next = copy(ledger);
  const again = new Set(unfinished);
  for (const sample of next.live) {
    if (sample.shardId !== shardId) continue;
    sample.state = again.has(sample.id) ? 'waiting' : 'completed';
    delete sample.rank;
    delete sample.shardId;
  }
  checkLedgerInvariants(next);
  return next;
}

/** One new shard: waiting samples that start together on `rank`. */
export interface ShardPlacement {
  id: string;
  rank: RankId;
  sampleIds: readonly number[];
}

/**
 * assignToShard for several new shards at once: one copy of the ledger and one invariant check
 * instead of one per shard (a refill places a shard on every rank). No sample may be in two of them.
 */
export function assignToShards(ledger: SampleLedger, shards: readonly ShardPlacement[]): SampleLedger {
  if (shards.length === 0) return ledger;
  for (const shard of shards) checkIntRange(`assignToShards ${shard.id}: rank`, shard.rank, 0, Number.MAX_SAFE_INTEGER);
  checkNoDuplicates('assignToShards: shard ids', shards, (shard) => shard.id);
  requireStates(ledger, `assignToShards ${shards.map((shard) => shard.id).join(', ')}`, shards.flatMap((shard) => shard.sampleIds), ['waiting']);
  const ids = new Set(shards.map((shard) => shard.id));
  const inUse = ledger.live.find((sample) => sample.shardId !== undefined && ids.has(sample.shardId));
  if (inUse !== undefined) {
    throw new ValidationError('VAL_NO_DUPLICATES', 'assignToShards: shard id', JSON.stringify(inUse.shardId), 'shard id already in use');
  }
  const next = copy(ledger);
  const placement = new Map<number, ShardPlacement>();
  for (const shard of shards) for (const id of shard.sampleIds) placement.set(id, shard);
  for (const sample of next.live) {
    const shard = placement.get(sample.id);
    if (shard === undefined) continue;
    sample.state = 'running';
    sample.rank = shard.rank;
    sample.shardId = shard.id;
  }
  checkLedgerInvariants(next);
  return next;
}

/**
 * settleShard for several ended shards at once (one copy, one invariant check): each shard's
 * `unfinished` samples wait for a new placement, its other live samples completed.
 */
export function settleShards(ledger: SampleLedger, shards: readonly { shardId: string; unfinished: readonly number[] }[]): SampleLedger {
  if (shards.length === 0) return ledger;
  checkNoDuplicates('settleShards: shard ids', shards, (shard) => shard.shardId);
  const settling = new Map(shards.map((shard) => [shard.shardId, new Set<number>()]));
  for (const sample of ledger.live) if (sample.shardId !== undefined) settling.get(sample.shardId)?.add(sample.id);
  const again = new Set<number>();
  for (const { shardId, unfinished } of shards) {
    checkNoDuplicates(`settleShard ${shardId}: unfinished`, unfinished);
    const onShard = settling.get(shardId)!;
    const strays = unfinished.filter((id) => !onShard.has(id));
    if (strays.length > 0) {
      throw new ValidationError('VAL_SUBSET', `settleShard ${shardId}: unfinished`, JSON.stringify(strays), "not running on this shard");
    }
    for (const id of unfinished) again.add(id);
  }
  const next = copy(ledger);
  for (const sample of next.live) {
    if (sample.shardId === undefined || !settling.has(sample.shardId)) continue;
    sample.state = again.has(sample.id) ? 'waiting' : 'completed';
    delete sample.rank;
    delete sample.shardId;
  }
  checkLedgerInvariants(next);
  return next;
}

/**
 * The samples of a training batch leave the ledger. They may still be on a running shard.
 * `contexts`: Σ and Σ² of the batch's context tokens (its manifest's), added to `trainedContext` when known.
 */
export function sealBatch(ledger: SampleLedger, ids: readonly number[], contexts?: { tokens: number; squaredTokens: number }): SampleLedger {
  requireStates(ledger, 'sealBatch', ids, ['running', 'completed']);
  const next = copy(ledger);
  const sealed = new Set(ids);
  next.live = next.live.filter((sample) => !sealed.has(sample.id));
  next.counters.batched += ids.length;
  checkLedgerInvariants(next);
  return contexts === undefined ? next : recordTrainedContexts(next, ids.length, contexts);
}

/**
 * Adds a sealed batch's contexts (Σ and Σ² of its `samples` final context tokens, from its
 * manifest) to `trainedContext`: for a batch sealed before its manifest was written.
 */
export function recordTrainedContexts(ledger: SampleLedger, samples: number, contexts: { tokens: number; squaredTokens: number }): SampleLedger {
  checkIntRange('trained contexts: samples', samples, 1, ledger.counters.batched);
  checkIntRange('trained contexts: context tokens', contexts.tokens, 0, Number.MAX_SAFE_INTEGER);
  checkPostcondition('trained contexts: Σ of squared context tokens finite and ≥ 0', Number.isFinite(contexts.squaredTokens) && contexts.squaredTokens >= 0, () => String(contexts.squaredTokens));
  const next = copy(ledger);
  const before = next.counters.trainedContext ?? { samples: 0, tokens: 0, squaredTokens: 0 };
  next.counters.trainedContext = { samples: before.samples + samples, tokens: before.tokens + contexts.tokens, squaredTokens: before.squaredTokens + contexts.squaredTokens };
  checkLedgerInvariants(next);
  return next;
}

/** Samples that are not running leave the ledger for a stated reason. */
export function drop(ledger: SampleLedger, ids: readonly number[], reason: DropReason): SampleLedger {
  if (!DROP_REASONS.includes(reason)) {
    throw new ValidationError('VAL_SUBSET', 'drop: reason', JSON.stringify(reason), `must be one of ${DROP_REASONS.join(', ')}`);
  }
  requireStates(ledger, `drop (${reason})`, ids, ['waiting', 'completed']);
  const next = copy(ledger);
  const dropped = new Set(ids);
  next.live = next.live.filter((sample) => !dropped.has(sample.id));
  next.counters.dropped[reason] += ids.length;
  checkLedgerInvariants(next);
  return next;
}

/** Live samples too old for a batch trained from `trainVersion`: lag beyond the async ratio. */
export function staleIds(ledger: SampleLedger, trainVersion: number, asyncRatio: number): number[] {
  return ledger.live.filter((sample) => sample.state !== 'running' && trainVersion - sample.startVersion > asyncRatio).map((sample) => sample.id);
}

/**
 * Picks the training batch from completed samples: oldest policy version first (the samples
 * closest to going stale), then in completion order as given.
 */
export function selectBatch(ledger: SampleLedger, completedInOrder: readonly number[], batchSize: number): number[] {
  checkIntRange('batch size', batchSize, 1, Number.MAX_SAFE_INTEGER);
  requireStates(ledger, 'selectBatch: completed candidates', completedInOrder, ['running', 'completed']);
  if (completedInOrder.length < batchSize) {
    throw new ValidationError('VAL_INT_RANGE', 'selectBatch: completed candidates', String(completedInOrder.length), `fewer than the batch size ${batchSize}`);
  }
  const byId = index(ledger);
  const order = new Map(completedInOrder.map((id, position) => [id, position]));
  return [...completedInOrder]
    .sort((a, b) => byId.get(a)!.startVersion - byId.get(b)!.startVersion || order.get(a)! - order.get(b)!)
    .slice(0, batchSize);
}

export function samplesByState(ledger: SampleLedger): Record<SampleState, number[]> {
  const out: Record<SampleState, number[]> = { waiting: [], running: [], completed: [] };
  for (const sample of ledger.live) out[sample.state].push(sample.id);
  return out;
}

export function samplesOnShard(ledger: SampleLedger, shardId: string): number[] {
  return ledger.live.filter((sample) => sample.shardId === shardId).map((sample) => sample.id);
}

/**
 * Samples rolling out per rank, for least-loaded placement over `ranks`: running in the ledger,
 * less `finished` (samples the store reported completed while their shard runs on: they hold no
 * slot on the engine any more).
 */
export function loadsByRank(ledger: SampleLedger, ranks: readonly RankId[], finished: readonly number[] = []): { rank: RankId; load: number }[] {
  const loads = new Map<RankId, number>(ranks.map((rank) => [rank, 0]));
  const done = new Set(finished);
  for (const sample of ledger.live) {
    if (sample.state === 'running' && !done.has(sample.id) && sample.rank !== undefined && loads.has(sample.rank)) loads.set(sample.rank, loads.get(sample.rank)! + 1);
  }
  return [...loads.entries()].map(([rank, load]) => ({ rank, load }));
}

/**
 * The ranks `finished` freed a slot on (running in the ledger, on a rank), in the order of their
 * first sample in `finished` (completion order): least-loaded placement's tie order.
 */
export function ranksInOrderFreed(ledger: SampleLedger, finished: readonly number[]): RankId[] {
  const rankOf = new Map(ledger.live.filter((sample) => sample.state === 'running' && sample.rank !== undefined).map((sample) => [sample.id, sample.rank!]));
  const ranks: RankId[] = [];
  for (const id of finished) {
    const rank = rankOf.get(id);
    if (rank !== undefined && !ranks.includes(rank)) ranks.push(rank);
  }
  return ranks;
}

export function checkLedgerInvariants(ledger: SampleLedger): void {
  checkNoDuplicates('ledger: live sample ids', ledger.live, (sample) => sample.id);
  const dropped = Object.values(ledger.counters.dropped).reduce((sum, n) => sum + n, 0);
  checkPostcondition('ledger: admitted = live + batched + dropped', ledger.counters.admitted === ledger.live.length + ledger.counters.batched + dropped, () =>
    JSON.stringify({ admitted: ledger.counters.admitted, live: ledger.live.length, batched: ledger.counters.batched, dropped }),
  );
  const beyond = ledger.live.filter((sample) => sample.id < 0 || sample.id >= ledger.nextSampleId).map((sample) => sample.id);
  checkPostcondition('ledger: ids were issued', beyond.length === 0, () => JSON.stringify(beyond));
  const inconsistent = ledger.live.filter((sample) => (sample.state === 'running') !== (sample.rank !== undefined && sample.shardId !== undefined));
  checkPostcondition('ledger: running ⇔ placed on a rank and shard', inconsistent.length === 0, () => JSON.stringify(inconsistent));
}
