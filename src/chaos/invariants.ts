/**
 * The invariants the fault-injection harness checks after every iteration (issue #4), as pure
 * functions over what it observed: the run's status, the store's audit and the engines' state.
 * Each returns violations as sentences naming what is wrong; an empty list means it holds.
 */
import type { PoolLayout } from '../gpu/layout';
import { checkPoolInvariants, type PoolState } from '../gpu/roles';
import type { RunStatus } from '../contract/types';
import type { AuditReport } from '../store/types';

export interface RankEngineState {
  rank: number;
  weightVersion: number;
  resident: string[];
}

export interface TrainerEngineState {
  node: number;
  weightVersion: number;
  onloaded: boolean;
}

/** What the harness sees once iteration `iteration` is over and the run is paused (or done). */
export interface IterationSnapshot {
  iteration: number;
  status: Pick<RunStatus, 'iteration' | 'version' | 'samples'>;
  audit: AuditReport;
  ranks: RankEngineState[];
  trainers: TrainerEngineState[];
  /** The trainer shares GPUs with rollout ranks (colocated, multiplexed): it must be offloaded between iterations. */
  trainerShared: boolean;
  /** Simulated out-of-memory errors found in the iteration's histories. */
  outOfMemory: string[];
}

export interface IterationVerdict {
  violations: string[];
  /** Samples admitted and neither trained, dropped with a reason, nor live: must be 0. */
  samplesLost: number;
}

const sum = (values: Record<string, number>): number => Object.values(values).reduce((a, b) => a + b, 0);

export function checkIteration(snapshot: IterationSnapshot): IterationVerdict {
  const { iteration, status, audit } = snapshot;
  const violations: string[] = audit.violations.map((v) => `store audit: ${v}`);
  const s = status.samples;
  const expectedVersion = iteration + 1;

  // Exactly once: every admitted sample is trained, dropped for a reason, or live.
  const live = s.running + s.completedWaiting + s.waiting;
  const accounted = s.trained + sum(s.dropped) + live;
  const samplesLost = Math.max(0, s.admitted - accounted) + Math.max(0, s.admitted - audit.samples);
  if (accounted !== s.admitted) violations.push(`ledger: ${s.admitted} admitted but ${accounted} trained + dropped + live`);
  if (audit.samples !== s.admitted) violations.push(`store holds ${audit.samples} samples, the run admitted ${s.admitted}`);
  if (audit.batched !== s.trained) violations.push(`store has ${audit.batched} batched samples, the run trained ${s.trained}`);
  if (audit.batches !== expectedVersion) violations.push(`store has ${audit.batches} batches after iteration ${iteration}, expected ${expectedVersion}`);
  for (const reason of new Set([...Object.keys(s.dropped), ...Object.keys(audit.dropped)])) {
    if (reason === '' || reason === 'unknown') violations.push(`samples dropped without a stated reason (${audit.dropped[reason] ?? s.dropped[reason]})`);
    if ((s.dropped[reason] ?? 0) !== (audit.dropped[reason] ?? 0)) {
      violations.push(`dropped '${reason}': run says ${s.dropped[reason] ?? 0}, store says ${audit.dropped[reason] ?? 0}`);
    }
  }
  if (audit.running !== s.running + s.waiting) violations.push(`store has ${audit.running} unfinished samples, the run ${s.running + s.waiting}`);
  if (audit.completed - audit.batched !== s.completedWaiting) {
    violations.push(`store has ${audit.completed - audit.batched} completed unbatched samples, the run ${s.completedWaiting}`);
  }

  // Weights: the run, every rank and every train node at v(iteration + 1).
  if (status.version !== expectedVersion) violations.push(`run at weights v${status.version} after iteration ${iteration}, expected v${expectedVersion}`);
  for (const rank of snapshot.ranks) {
    if (rank.weightVersion !== expectedVersion) violations.push(`rank ${rank.rank} serves weights v${rank.weightVersion}, expected v${expectedVersion}`);
  }
  for (const trainer of snapshot.trainers) {
    if (trainer.weightVersion !== expectedVersion) violations.push(`trainer node ${trainer.node} at v${trainer.weightVersion}, expected v${expectedVersion}`);
  }

  // No GPU in two roles between iterations: every rank serves (weights + KV cache resident) and a
  // trainer that shares their GPUs is offloaded.
  for (const rank of snapshot.ranks) {
    const missing = ['weights', 'kv_cache'].filter((tag) => !rank.resident.includes(tag));
    if (missing.length > 0) violations.push(`rank ${rank.rank} is not serving after iteration ${iteration}: ${missing.join(' and ')} not resident`);
  }
  if (snapshot.trainerShared) {
    for (const trainer of snapshot.trainers) {
      if (trainer.onloaded) violations.push(`trainer node ${trainer.node} still holds its GPUs after iteration ${iteration} (shared with rollout ranks)`);
    }
  }
  for (const oom of snapshot.outOfMemory) violations.push(`simulated out-of-memory: ${oom}`);
  return { violations, samplesLost };
}

/** The highest weight versions observed so far: in any status, and in the run's own (progress unavailable). */
export interface ObservedVersions {
  highest: number;
  /** Versions the run's status reported without the running iteration's progress: its committed weights. */
  committed: number;
  /**
   * The latest iteration attempt whose progress named its attempt, with the highest version seen
   * before that iteration began: where a retry of the iteration starts from at the least.
   */
  latest?: { iteration: number; attempt: number; before: number };
}

type ObservedStatus = Pick<RunStatus, 'version' | 'iteration' | 'phase' | 'progressUnavailable' | 'iterationAttempt'> & { pool?: PoolState };

/**
 * Whether a status reports the run's own, committed version: the running iteration's progress was
 * not merged in (its query failed, or the iteration has not reported yet: a retried attempt
 * before its first phase, or between iterations). A merged status names its attempt.
 */
function runsOwnStatus(status: ObservedStatus): boolean {
  return status.progressUnavailable !== undefined || status.iterationAttempt === undefined;
}

/**
 * For a status from a later attempt of the latest iteration, which starts again from the
 * iteration's starting version: the highest version seen before that iteration began. Otherwise undefined.
 */
function retriedFrom(previous: ObservedVersions, status: ObservedStatus): number | undefined {
  const { latest } = previous;
  const attempt = status.iterationAttempt;
  const retry = !runsOwnStatus(status) && attempt !== undefined && latest !== undefined && status.iteration === latest.iteration && attempt > latest.attempt;
  return retry ? latest.before : undefined;
}

/**
 * Checks one status observed while the run goes on: the pool state (if reported) is valid (no
 * GPU in two roles) and the weight version never goes back. A status without the running
 * iteration's progress (its query failed or timed out, or the iteration has not reported yet: a
 * retried attempt before its first phase) reports the run's committed version, below
 * the iteration's once it has trained: it is held to the committed versions seen before. So is a
 * later attempt of an iteration, which starts again from the iteration's starting version (its
 * train step, done by the failed attempt, returns the same version again), held to the versions
 * seen before the iteration began.
 */
export function checkObservedStatus(layout: PoolLayout, previous: ObservedVersions, status: ObservedStatus): string[] {
  const violations: string[] = [];
  const ownOnly = runsOwnStatus(status);
  const retryFrom = retriedFrom(previous, status);
  const floor = ownOnly ? previous.committed : retryFrom !== undefined ? Math.max(previous.committed, retryFrom) : previous.highest;
  if (status.version < floor) {
    const source = ownOnly ? `; the run's own status, ${status.progressUnavailable === undefined ? 'no iteration progress yet' : "the iteration's progress unavailable"}` : retryFrom !== undefined ? `; attempt ${status.iterationAttempt}, held to the versions before the iteration` : '';
    violations.push(`weight version went back from v${floor} to v${status.version} (iteration ${status.iteration}, ${status.phase}${source})`);
  }
  if (status.pool !== undefined) {
    try {
      checkPoolInvariants(layout, status.pool);
    } catch (error) {
      violations.push(`pool state in iteration ${status.iteration} (${status.phase}): ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return violations;
}

/** The versions observed once `status` is seen too. */
export function observeVersions(previous: ObservedVersions, status: ObservedStatus): ObservedVersions {
  const attempt = status.iterationAttempt;
  if (attempt === undefined || runsOwnStatus(status)) {
    return { ...previous, highest: Math.max(previous.highest, status.version), committed: Math.max(previous.committed, status.version) };
  }
  const before = retriedFrom(previous, status);
  if (before !== undefined) {
    // What the failed attempt reported is done again: the retry is held to its own versions from here.
    return { ...previous, highest: Math.max(before, previous.committed, status.version), latest: { iteration: status.iteration, attempt, before } };
  }
  const highest = Math.max(previous.highest, status.version);
  const { latest } = previous;
  if (latest === undefined || status.iteration > latest.iteration) {
    return { ...previous, highest, latest: { iteration: status.iteration, attempt, before: previous.highest } };
  }
  return { ...previous, highest };
}
