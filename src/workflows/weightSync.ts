/**
 * Weight sync by broadcast, orchestrated by the iteration workflow (docs/design.md §3.1 step 7).
 *
 * One collective = the trainer's send and every node's receive, started together in one
 * cancellation scope with one deadline (`weightSync.timeoutMs`); each activity heartbeats. The
 * first member to fail (an engine or the trainer died, answered an error, or the deadline passed
 * because one hangs) fails the collective: the others are cancelled, the group is torn down on
 * every member (best effort), and the next attempt forms a new group under a new name. The group
 * a successful sync used is kept for the next iteration, so it is created once per run and rebuilt
 * only when a member restarted (a rollout shard found its engine behind its version, or its
 * collective fails), the members changed, or a collective failed.
 * After the last attempt the sync falls back to disk where configured, else fails.
 *
 * Pure workflow code: activities as types, no Node APIs.
 */
import { ActivityCancellationType, ApplicationFailure, CancellationScope, isCancellation, log, proxyActivities, sleep } from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import { rankById, type PoolLayout, type RankId } from '../gpu/layout';
import type { GpuNodeActivities } from '../contract/activities';
import { describeError } from '../contract/errors';
import { rankRanges } from './drive';
import { rankQueue, trainerQueue } from '../contract/naming';
import type { BroadcastSyncSpec, RunSpec, WeightGroupState } from '../contract/types';

const MAX_BACKOFF_MS = 30_000;

export interface BroadcastSyncDeps {
  spec: RunSpec & { weightSync: BroadcastSyncSpec };
  /** Unique per iteration execution: group names never repeat across attempts and executions. */
  groupTag: string;
  /** The trainer node that sends (the train leader). */
  trainerNode: number;
  /** Ranks grouped by node: each group's node activity goes to its first rank's queue. */
  nodeGroups(ranks: readonly RankId[]): RankId[][];
  /** The disk sync of the iteration (the fallback). */
  diskSync(ranks: readonly RankId[], version: number): Promise<unknown>;
}

export interface BroadcastSyncOutcome {
  /** The group left formed (undefined after a fallback to disk). */
  group: WeightGroupState | undefined;
  /** Collectives started (1 when the first succeeded). */
  attempts: number;
  fellBackToDisk: boolean;
}

/** Rank offsets in the group: the trainer is rank 0, each engine takes one rank per GPU. */
export function groupRanks(layout: PoolLayout, ranks: readonly RankId[]): { offsets: Map<RankId, number>; worldSize: number } {
  const offsets = new Map<RankId, number>();
  let next = 1;
  for (const rank of [...ranks].sort((a, b) => a - b)) {
    offsets.set(rank, next);
    next += rankById(layout, rank).gpus.length;
  }
  return { offsets, worldSize: next };
}

/** How far an attempt's formation got: teardown undoes only what was asked of a member. */
interface FormationReach {
  /** The trainer was asked to open the group (it may have, even if the call failed). */
  opened: boolean;
  /** The members were asked to join. */
  joined: boolean;
}

const sameRanks = (a: readonly RankId[], b: readonly RankId[]): boolean => a.length === b.length && [...a].sort((x, y) => x - y).every((rank, i) => rank === [...b].sort((x, y) => x - y)[i]);

export function createBroadcastSync(deps: BroadcastSyncDeps): {
  syncWeights(ranks: readonly RankId[], version: number, kept: WeightGroupState | undefined, restarted?: readonly RankId[]): Promise<BroadcastSyncOutcome>;
} {
  const { spec, trainerNode } = deps;
  const sync = spec.weightSync;
  const runId = spec.runId;
  // Members of a collective run once: a retried receive would wait for a send that has ended.
  const collectiveOptions = {
    startToCloseTimeout: sync.timeoutMs,
    heartbeatTimeout: spec.heartbeatTimeoutMs,
    retry: { maximumAttempts: 1 },
    cancellationType: ActivityCancellationType.TRY_CANCEL,
  };
  const trainerCollective = proxyActivities<GpuNodeActivities>({ taskQueue: trainerQueue(spec.taskQueuePrefix, trainerNode), ...collectiveOptions });
  const rankCollective = (rank: RankId) => proxyActivities<GpuNodeActivities>({ taskQueue: rankQueue(spec.taskQueuePrefix, rank), ...collectiveOptions });
  const retry: RetryPolicy = {
    initialInterval: spec.activityRetry.initialIntervalMs,
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    maximumAttempts: spec.activityRetry.maximumAttempts,
  };
  // Opening is idempotent per group name (a restarting trainer gets retried into it).
  const trainerControl = proxyActivities<GpuNodeActivities>({
    taskQueue: trainerQueue(spec.taskQueuePrefix, trainerNode),
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: spec.heartbeatTimeoutMs,
    retry,
  });
  // Teardown is best effort: a dead member has no group to close, and must not hold the retry.
  const teardownOptions = { scheduleToCloseTimeout: spec.heartbeatTimeoutMs, retry: { maximumAttempts: 1 } };
  const trainerTeardown = proxyActivities<GpuNodeActivities>({ taskQueue: trainerQueue(spec.taskQueuePrefix, trainerNode), ...teardownOptions });
  const rankTeardown = (rank: RankId) => proxyActivities<GpuNodeActivities>({ taskQueue: rankQueue(spec.taskQueuePrefix, rank), ...teardownOptions });

  /**
   * Waits until every member's engine answers (one restarting after a crash would leave the others
   * in the formation until the group's timeout), opens the group on the trainer, then every node
   * joins; resolves once all joined.
   */
  async function form(name: string, ranks: readonly RankId[], reach: FormationReach): Promise<WeightGroupState> {
    const { offsets, worldSize } = groupRanks(spec.layout, ranks);
    await everyMember(
      deps.nodeGroups(ranks).map((onNode) =>
        rankCollective(onNode[0]!).awaitWeightGroupMembers.executeWithOptions({ summary: `await engines of ranks ${rankRanges(onNode)} for ${name}` }, [{ runId, ranks: onNode }]),
      ),
    );
    reach.opened = true;
    const opened = await trainerControl.openWeightGroup.executeWithOptions({ summary: `open weight group ${name} (world size ${worldSize})` }, [
      { runId, node: trainerNode, spec: { name, masterAddress: sync.masterAddress, worldSize, backend: sync.backend }, bucketBytes: sync.bucketBytes },
    ]);
    const group = { ...opened, ranks: [...ranks].sort((a, b) => a - b) };
    reach.joined = true;
    await everyMember(
      deps.nodeGroups(ranks).map((onNode) =>
        rankCollective(onNode[0]!).joinWeightGroup.executeWithOptions({ summary: `join ${name}: ranks ${rankRanges(onNode)}` }, [
          { runId, ranks: onNode, group: opened, rankOffsets: onNode.map((rank) => offsets.get(rank)!) },
        ]),
      ),
    );
    return group;
  }

  /** The trainer's send and every node's receive, together. */
  async function transfer(group: WeightGroupState, version: number): Promise<void> {
    const { ranks, ...wire } = group;
    await everyMember([
      trainerCollective.broadcastWeights.executeWithOptions({ summary: `broadcast v${version} in ${group.name}` }, [
        { runId, node: trainerNode, groupName: group.name, version, bucketBytes: sync.bucketBytes, layout: sync.layout },
      ]),
      ...deps.nodeGroups(ranks).map((onNode) =>
        rankCollective(onNode[0]!).receiveWeights.executeWithOptions({ summary: `receive v${version} in ${group.name}: ranks ${rankRanges(onNode)}` }, [
          { runId, ranks: onNode, group: wire, version },
        ]),
      ),
    ]);
  }

  /** Closes the group on the trainer and leaves it on every member, as far as `reach` says they were asked to hold it. */
  async function teardown(name: string, ranks: readonly RankId[], reach: FormationReach = { opened: true, joined: true }): Promise<void> {
    const closing = [
      ...(reach.opened ? [trainerTeardown.closeWeightGroup.executeWithOptions({ summary: `close ${name}` }, [{ runId, node: trainerNode, groupName: name }])] : []),
      ...(reach.joined
        ? deps.nodeGroups(ranks).map((onNode) =>
            rankTeardown(onNode[0]!).leaveWeightGroup.executeWithOptions({ summary: `leave ${name}: ranks ${rankRanges(onNode)}` }, [{ runId, ranks: onNode, groupName: name }]),
          )
        : []),
    ];
    const results = await Promise.allSettled(closing);
    for (const result of results) {
      if (result.status === 'rejected') log.warn(`weight group ${name}: teardown on a member failed (it holds no group or is down): ${describeError(result.reason)}`);
    }
  }

  /**
   * `restarted`: ranks whose engine restarted since the last sync (a shard found it behind): a kept
   * group with one of them is formed anew, since the trainer's send into a group a member no longer
   * holds could not be called off (NCCL) until the group's own timeout.
   */
  async function syncWeights(ranks: readonly RankId[], version: number, kept: WeightGroupState | undefined, restarted: readonly RankId[] = []): Promise<BroadcastSyncOutcome> {
    const restartedMembers = kept?.ranks.filter((rank) => restarted.includes(rank)) ?? [];
    if (kept !== undefined && restartedMembers.length > 0) log.warn(`weight group ${kept.name}: the engines of ranks ${rankRanges(restartedMembers)} restarted since the last sync; forming a new group`);
    let group = kept !== undefined && sameRanks(kept.ranks, ranks) && kept.backend === sync.backend && restartedMembers.length === 0 ? kept : undefined;
    if (kept !== undefined && group === undefined) await CancellationScope.nonCancellable(() => teardown(kept.name, kept.ranks));
    const failures: string[] = [];
    for (let attempt = 1; attempt <= sync.attempts; attempt++) {
      const name = group?.name ?? `${runId}-${deps.groupTag}-v${version}-a${attempt}`;
      // A kept group is held by every member; a new one as far as its formation got.
      const reach: FormationReach = { opened: group !== undefined, joined: group !== undefined };
      const scope = new CancellationScope({ cancellable: true, timeout: sync.timeoutMs });
      try {
        const formed = await scope.run(async () => {
          const used = group ?? (await form(name, ranks, reach));
          await transfer(used, version);
          return used;
        });
        return { group: formed, attempts: attempt, fellBackToDisk: false };
      } catch (error) {
        // The iteration itself is being cancelled: not a failed collective.
        if (isCancellation(error) && CancellationScope.current().consideredCancelled) throw error;
        const reason = isCancellation(error) ? `no result within the ${sync.timeoutMs / 1000} s deadline` : describeError(error);
        failures.push(`attempt ${attempt} (group ${name}): ${reason}`);
        log.warn(`weight sync of v${version} by broadcast, attempt ${attempt}/${sync.attempts} in group ${name} failed: ${reason}; ${reach.opened ? 'tearing the group down' : 'no group was opened'}`);
      } finally {
        // Members still in the failed collective are cancelled (they would wait for the group's timeout).
        scope.cancel();
      }
      // Nothing to tear down where the members' engines were still being awaited.
      if (reach.opened) await CancellationScope.nonCancellable(() => teardown(name, ranks, reach));
      group = undefined;
      // Backoff: a member that died needs time to come back (an engine restart takes seconds to minutes).
      if (attempt < sync.attempts) await sleep(Math.min(MAX_BACKOFF_MS, spec.activityRetry.initialIntervalMs * 2 ** (attempt - 1)));
    }
    if (sync.fallback === 'disk') {
      log.warn(`weight sync of v${version}: broadcast failed ${sync.attempts} times, falling back to disk: ${failures.join('; ')}`);
      await trainerControl.exportWeights.executeWithOptions({ summary: `export v${version} (broadcast failed: sync from disk)` }, [{ runId, node: trainerNode, version }]);
      await deps.diskSync(ranks, version);
      return { group: undefined, attempts: sync.attempts, fellBackToDisk: true };
    }
    throw ApplicationFailure.retryable(`weight sync of v${version} by broadcast failed ${sync.attempts} times: ${failures.join('; ')}`, 'WeightBroadcastFailed');
  }

  return { syncWeights };
}

/**
 * Resolves when every member succeeded; rejects with the first failure at once (the others would
 * only wait for the group's timeout). Later rejections are observed, not left unhandled.
 */
function everyMember(calls: Promise<unknown>[]): Promise<void> {
  for (const call of calls) call.catch(() => undefined);
  return Promise.all(calls).then(() => undefined);
}
