/**
 * Rollout shards in the iteration workflow. The shards of one launch on one node that the shrink
 * stops together (all released or all kept) run as one activity, a group, in its own cancellation
 * scope: one activity per node, not per rank (docs/design.md §5.2). Stopping shards asks their
 * node's worker directly (one round trip, answered once they have checkpointed) and cancels their
 * groups, which every stop takes whole (the fallback for shards the worker is not running, whose
 * end is then awaited).
 */
import { ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, log, TimeoutFailure } from '@temporalio/workflow';
import { TimeoutType } from '@temporalio/common';
import type { RankId } from '../gpu/layout';
import type { ShardRef } from '../iteration/effects';
import { describeError } from '../contract/errors';
import type { RunSpec } from '../contract/types';
import type { RankKvCapacity, ShardGroupResult, ShardInput, ShardOutcome, ShardResult } from '../contract/types';
import { checkPostcondition } from '../validation/patterns';
import type { IterationActivities } from './iterationActivities';
import type { LostNodes } from './lostNodes';
import { countOf, rankRanges } from './drive';

/** The shards of one launch on one node and one side of the shrink, run as one activity. */
interface ShardGroup {
  scope: CancellationScope;
  /** Settles when the activity ends: completed, cancelled (after checkpointing) or failed. */
  ended: Promise<unknown>;
  members: RunningShard[];
}

interface RunningShard {
  ref: ShardRef;
  group: ShardGroup;
  /** Its group's end: a member's own end is known only with its group's. */
  ended: Promise<unknown>;
  /** Set once `ended` has settled: such a shard needs no stop. */
  done: boolean;
  /** Its own outcome, once it ended with a result. */
  result?: ShardOutcome;
  /** Why it failed, once it ended with a failure other than its cancellation. */
  failure?: unknown;
  /**
   * The unlessShardFails races that watch it: those under way when it was launched and those
   * begun while it ran. A race keeps watching a shard a stop removed during it, not one removed before.
   */
  watchedBy: Set<(error: unknown) => void>;
}

/** How one stopped shard settled: its outcome (its result or the stop's answer), or its failure. */
interface ShardEnd {
  ref: ShardRef;
  failure: unknown;
  outcome: ShardOutcome | undefined;
}

/** What a stop learned: the outcome of each shard that reported one, and the failures of those that failed. */
export interface StopResult {
  outcomes: Map<string, ShardOutcome>;
  failures: unknown[];
}

/**
 * A shard whose worker died after we asked it to stop ends on its heartbeat timeout (Temporal does
 * not retry an activity whose cancellation was requested). Its samples are in the store at their
 * last checkpoint, and the store fences the dead shard out: it settles like a cancelled one.
 */
function diedWhileStopping(error: unknown): boolean {
  return error instanceof ActivityFailure && error.cause instanceof TimeoutFailure && error.cause.timeoutType === TimeoutType.HEARTBEAT;
}

export class ShardRunner {
  private readonly running = new Map<string, RunningShard>();
  /** The unlessShardFails races under way: each also watches the shards launched during it. */
  private readonly failureWatchers = new Set<(error: unknown) => void>();
  /** What each rank's engine reported of its KV capacity: carried in from earlier iterations, updated by every shard result. */
  readonly kvCapacity: Map<RankId, number | null>;
  /**
   * Ranks whose engine a shard found behind its version, or the sync's reload of a released rank
   * behind the last sync's: restarted since the last sync, in no kept weight group.
   */
  readonly restartedRanks = new Set<RankId>();
  private releasedAtShrink: ReadonlySet<RankId> | undefined;

  /**
   * @param ranksReleasedAtShrink the ranks the shrink stops (ranksReleasedAtShrink): shards of one
   * launch on one node, all in it or all out of it, make a group that every stop takes whole.
   */
  constructor(
    private readonly spec: RunSpec,
    private readonly iteration: number,
    private readonly activities: IterationActivities,
    private readonly lost: LostNodes,
    private readonly ranksReleasedAtShrink: () => readonly RankId[],
    reported: readonly RankKvCapacity[] = [],
  ) {
    this.kvCapacity = new Map(reported.map(({ rank, tokens }) => [rank, tokens]));
  }

  /** Starts the shards, one activity per node and side of the shrink. */
  launch(refs: readonly ShardRef[], version: number): void {
    this.releasedAtShrink ??= new Set(this.ranksReleasedAtShrink());
    const groups = new Map<string, ShardRef[]>();
    for (const ref of refs) {
      const key = `${this.spec.layout.ranks[ref.rank]!.node}:${this.releasedAtShrink.has(ref.rank)}`;
      groups.set(key, [...(groups.get(key) ?? []), ref]);
    }
    for (const members of groups.values()) this.launchGroup(members, version);
  }

  private launchGroup(refs: readonly ShardRef[], version: number): void {
    const inputs = refs.map((ref): ShardInput => ({
      runId: this.spec.runId,
      shardId: ref.id,
      rank: ref.rank,
      sampleIds: ref.sampleIds,
      version,
      maxTurns: this.spec.maxTurns,
      maxTokens: this.spec.maxTokens,
      environmentTimeoutMs: this.spec.environmentTimeoutMs,
    }));
    const node = this.spec.layout.ranks[refs[0]!.rank]!.node;
    const samples = refs.reduce((sum, ref) => sum + ref.sampleIds.length, 0);
    const summary = `rollout node ${node} ranks ${rankRanges(refs.map((ref) => ref.rank))} (${countOf(refs.length, 'shard')}, ${countOf(samples, 'sample')}, v${version})`;
    const scope = new CancellationScope();
    const ended = scope.run(() => this.activities.shard(refs[0]!.rank).runRolloutShards.executeWithOptions({ summary }, [{ runId: this.spec.runId, shards: inputs }]));
    const group: ShardGroup = { scope, ended, members: [] };
    for (const ref of refs) {
      const shard: RunningShard = { ref, group, ended, done: false, watchedBy: new Set(this.failureWatchers) };
      group.members.push(shard);
      this.running.set(ref.id, shard);
    }
    // Registered first, so it runs before anyone else observes the end: a lost node is marked
    // before a failure watch or a stop sees the failure. Also marks an early rejection handled.
    ended.then(
      (result) => this.groupEnded(group, result),
      (error: unknown) => this.groupFailed(group, error),
    );
  }

  private groupEnded(group: ShardGroup, { results }: ShardGroupResult): void {
    const byId = new Map(results.map((result) => [result.shardId, result]));
    const members = group.members.map((shard) => shard.ref.id);
    if (results.length !== members.length || members.some((id) => !byId.has(id))) {
      // A worker's bug: the members without a result settle from the store, which holds what they wrote.
      log.warn(`iteration ${this.iteration + 1}: a group of shards ${members.join(', ')} returned results for ${results.map((result) => result.shardId).join(', ')}`);
    }
    for (const shard of group.members) {
      shard.done = true;
      const result = byId.get(shard.ref.id);
      if (result === undefined) continue;
      shard.result = result;
      this.noteEngine(shard.ref.rank, result);
    }
  }

  private groupFailed(group: ShardGroup, error: unknown): void {
    for (const rank of new Set(group.members.map((shard) => shard.ref.rank))) this.lost.noteRankFailure(rank, error);
    for (const shard of group.members) {
      shard.done = true;
      if (isCancellation(error)) continue;
      shard.failure = error;
      for (const watch of shard.watchedBy) watch(error);
    }
  }

  /** What a shard's result says of its rank's engine. Results recorded before engines reported their capacity carry none. */
  private noteEngine(rank: RankId, result: ShardResult): void {
    if (result.kvCapacityTokens !== undefined) this.kvCapacity.set(rank, result.kvCapacityTokens);
    if (result.engineBehind !== undefined) this.restartedRanks.add(rank);
  }

  /** Settles once every running shard has ended (never, if none runs). */
  everyShardEnded(): Promise<undefined> {
    if (this.running.size === 0) return new Promise<undefined>(() => undefined);
    return Promise.allSettled([...new Set([...this.running.values()].map((shard) => shard.ended))]).then(() => undefined);
  }

  /**
   * Runs `work` in its own scope unless a shard fails first (then the failure is raised). The
   * scope is cancelled once the race is decided, so nothing `work` started outlives it.
   */
  async unlessShardFails<T>(work: () => Promise<T>): Promise<T> {
    const scope = new CancellationScope();
    const result = scope.run(work);
    result.catch(() => undefined);
    let fail: (error: unknown) => void = () => undefined;
    const shardFailure = new Promise<never>((_, reject) => (fail = reject));
    const failedBefore = [...this.running.values()].find((shard) => shard.failure !== undefined);
    if (failedBefore !== undefined) fail(failedBefore.failure);
    // The running shards, and those launched during the race (an admission ending beside the
    // train step), tell it of their failure from their own end handler: no promise per shard and race.
    for (const shard of this.running.values()) shard.watchedBy.add(fail);
    this.failureWatchers.add(fail);
    try {
      return await Promise.race([result, shardFailure]);
    } finally {
      this.failureWatchers.delete(fail);
      for (const shard of this.running.values()) shard.watchedBy.delete(fail);
      scope.cancel();
    }
  }

  /**
   * Stops the shards and waits until each has checkpointed: whichever comes first, its own end or
   * the direct stop's answer that it checkpointed in its worker (then its end arrives later and
   * changes nothing). Returns the outcomes the shards reported (their result or the stop's
   * answer; a shard cancelled or failed that the answer does not cover reports none) and the failures.
   */
  async stop(refs: readonly ShardRef[]): Promise<StopResult> {
    const selected = [...new Set(refs.map((ref) => this.running.get(ref.id)))].filter((shard): shard is RunningShard => shard !== undefined);
    this.checkWholeGroups(selected);
    for (const group of new Set(selected.map((shard) => shard.group))) group.scope.cancel();
    // The direct stop goes to shards still running only: one to an ended shard is wasted, and one
    // to a lost node would hold the stop for its whole timeout.
    const asked = selected.filter((shard) => !shard.done);
    const answered = this.requestDirectStop(asked);
    // Each shard settles once, by whichever comes first: one callback per shard and one for the
    // answer, not a race of chained promises per shard (each promise a workflow creates costs the
    // SDK's stack-trace hook; docs/benchmarks.md).
    const ends = await new Promise<ShardEnd[]>((resolve, reject) => {
      const settled = new Map<string, ShardEnd>();
      const settle = (shard: RunningShard, end: Omit<ShardEnd, 'ref'>): void => {
        if (settled.has(shard.ref.id)) return;
        settled.set(shard.ref.id, { ref: shard.ref, ...end });
        if (settled.size === selected.length) resolve(selected.map((each) => settled.get(each.ref.id)!));
      };
      if (selected.length === 0) resolve([]);
      const settledByAnswer = new Set<string>();
      // A shard asked to stop directly that its cancellation ended before the answer came waits for
      // the answer: the cancellation races the direct stop to the worker, and the answer still
      // holds its outcome (without it the shard settles from the store: a local activity and a
      // workflow task more).
      const askedIds = new Set(asked.map((shard) => shard.ref.id));
      let answerIn = false;
      const endedBeforeAnswer = new Set<string>();
      answered.then((outcomes) => {
        answerIn = true;
        for (const shard of selected) {
          if (settled.has(shard.ref.id)) continue;
          const outcome = outcomes.get(shard.ref.id);
          if (outcome !== undefined) {
            settledByAnswer.add(shard.ref.id);
            // A shard its cancellation ended reports its engine here only.
            this.noteEngine(shard.ref.rank, outcome);
            settle(shard, { failure: undefined, outcome });
          } else if (endedBeforeAnswer.has(shard.ref.id)) {
            settle(shard, { failure: undefined, outcome: undefined });
          }
        }
      }, reject);
      for (const shard of selected) {
        shard.ended.then(
          () => settle(shard, { failure: undefined, outcome: shard.result }),
          (error: unknown) => {
            const failure = isCancellation(error) || diedWhileStopping(error) ? undefined : error;
            // A failure after the stop's answer settled the shard changes no sample (all are
            // checkpointed) but must not pass unseen: a postcondition of the shard, a bug.
            if (settledByAnswer.has(shard.ref.id) && failure !== undefined) log.warn(`shard ${shard.ref.id}'s group failed after its stop had checkpointed it: ${describeError(failure)}`);
            if (failure === undefined && !answerIn && askedIds.has(shard.ref.id)) return void endedBeforeAnswer.add(shard.ref.id);
            settle(shard, { failure, outcome: undefined });
          },
        );
      }
    });
    for (const shard of selected) this.running.delete(shard.ref.id);
    const outcomes = new Map<string, ShardOutcome>();
    for (const end of ends) {
      if (end.outcome === undefined) continue;
      // A report that does not account for the shard's samples is a worker's bug: logged, and the
      // shard settles from the store, which holds what it wrote.
      if (!accountsForShard(end.ref, end.outcome)) {
        log.warn(`shard ${end.ref.id} reported an outcome that does not account for its samples once; settling it from the store: ${JSON.stringify(end.outcome)}`);
        continue;
      }
      outcomes.set(end.ref.id, inShardOrder(end.ref, end.outcome));
    }
    // A group's failure ends each of its members: reported once.
    return { outcomes, failures: [...new Set(ends.flatMap((end) => (end.failure === undefined ? [] : [end.failure])))] };
  }

  /**
   * Every stop takes the groups it touches whole (launches group the shards by node and side of
   * the shrink). A stop of part of a group would leave it running uncancelled, and Temporal could
   * retry it with a member the workflow settled and re-sharded: refused before anything is stopped.
   */
  private checkWholeGroups(selected: readonly RunningShard[]): void {
    const ids = new Set(selected.map((shard) => shard.ref.id));
    for (const group of new Set(selected.map((shard) => shard.group))) {
      const apart = group.members.filter((member) => this.running.has(member.ref.id) && !ids.has(member.ref.id));
      if (apart.length === 0) continue;
      const stopped = group.members.filter((member) => ids.has(member.ref.id)).map((member) => member.ref.id);
      throw ApplicationFailure.nonRetryable(
        `iteration ${this.iteration + 1}: a stop of shards ${stopped.join(', ')} apart from ${apart.map((member) => member.ref.id).join(', ')} of their group (one activity): every stop must take a group whole`,
        'PartialShardGroupStop',
      );
    }
  }

  /** Asks each node's worker to stop its shards; returns the outcomes of those that checkpointed there. */
  private async requestDirectStop(selected: readonly RunningShard[]): Promise<Map<string, ShardResult>> {
    const byNode = new Map<number, RunningShard[]>();
    for (const shard of selected) {
      const node = this.spec.layout.ranks[shard.ref.rank]!.node;
      byNode.set(node, [...(byNode.get(node) ?? []), shard]);
    }
    const stops = [...byNode.entries()].map(([node, onNode]) => {
      const rank: RankId = onNode[0]!.ref.rank;
      const summary = `stop ${countOf(onNode.length, 'shard')} node ${node} ranks ${rankRanges([...new Set(onNode.map((shard) => shard.ref.rank))])}`;
      return this.activities
        .bestEffort(rank)
        .stopShards.executeWithOptions({ summary }, [{ runId: this.spec.runId, shardIds: onNode.map((shard) => shard.ref.id) }])
        .then(
          // A gpu-node worker of an earlier build answers without outcomes: none (their ends are awaited).
          (answer) => answer.outcomes ?? [],
          // Not fatal: the cancellation request still stops the shards, one heartbeat later.
          (error: unknown) => {
            log.warn(`iteration ${this.iteration + 1}: direct stop of shards on node ${node} failed, relying on cancellation: ${describeError(error)}`);
            return [];
          },
        );
    });
    return new Map((await Promise.all(stops)).flat().map((outcome) => [outcome.shardId, outcome]));
  }
}

/**
 * A shard's reported outcome with its samples in the shard's order (as the store settles them,
 * so the ledger and the placement that follows do not depend on the order samples ended in).
 * Every sample of the shard is accounted for exactly once.
 */
export function inShardOrder(ref: ShardRef, outcome: ShardOutcome): ShardOutcome {
  checkPostcondition(`shard ${ref.id}: its reported outcome accounts for each of its ${ref.sampleIds.length} samples once`, accountsForShard(ref, outcome), () =>
    JSON.stringify({ sampleIds: ref.sampleIds, outcome }),
  );
  const completed = new Set(outcome.completed);
  const unfinished = new Set(outcome.unfinished);
  const dropped = new Map(outcome.dropped.map((entry) => [entry.id, entry]));
  return {
    shardId: ref.id,
    completed: ref.sampleIds.filter((id) => completed.has(id)),
    unfinished: ref.sampleIds.filter((id) => unfinished.has(id)),
    dropped: ref.sampleIds.flatMap((id) => {
      const entry = dropped.get(id);
      return entry === undefined ? [] : [{ id, reason: entry.reason }];
    }),
  };
}

/** Whether the outcome is this shard's and names each of its samples exactly once. */
export function accountsForShard(ref: ShardRef, outcome: ShardOutcome): boolean {
  const named = [...outcome.completed, ...outcome.unfinished, ...outcome.dropped.map((entry) => entry.id)];
  const onShard = new Set(ref.sampleIds);
  return outcome.shardId === ref.id && named.length === ref.sampleIds.length && new Set(named).size === named.length && named.every((id) => onShard.has(id));
}
