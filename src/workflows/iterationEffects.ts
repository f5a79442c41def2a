/**
 * The iteration program's effects as Temporal activities and timers (src/iteration/effects.ts).
 * Memory and weight operations go to each node once for all its ranks; every rank or trainer call
 * goes through LostNodes, so a node that takes no activity marks its ranks lost.
 */
import { ApplicationFailure, CancellationScope, log, setCurrentDetails, sleep, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { ALL_MEMORY_TAGS, type MemoryTag } from '../engines/memoryTags';
import { checkPostcondition, trainNodes, type RankId, type RankWork } from '../gpu';
import type { IterationEffects, PhaseReport, ReloadFailure, Step } from '../iteration/effects';
import { describeError } from '../contract/errors';
import { shardId } from '../contract/naming';
import type { NodeResumeResult } from '../contract/activities';
import type { RunSpec } from '../contract/types';
import type { IterationProgress, RankKvCapacity, SealedBatchFigures } from '../contract/types';
import { PHASE_KEY } from '../temporal/searchAttributes';
import { awaiting, begunWork, drive, countOf, rankRanges, type Suspension } from './drive';
import type { IterationActivities } from './iterationActivities';
import { isLostNodeError, type LostNodes } from './lostNodes';
import { ShardRunner } from './shards';
import { createBroadcastSync } from './weightSync';

export interface TemporalEffectsContext {
  spec: RunSpec;
  iteration: number;
  activities: IterationActivities;
  lost: LostNodes;
  /** The ranks the shrink stops (ranksReleasedAtShrink): the shards' launches group by it. */
  releasedAtShrink: () => readonly RankId[];
  /** What the ranks' engines reported of their KV capacity in earlier iterations (IterationInput.engineKvCapacity). */
  engineKvCapacity?: readonly RankKvCapacity[];
  /** Takes every phase report (the iteration's progress query answers the latest). */
  onProgress(progress: IterationProgress): void;
}

/** The effects, and what the iteration's shards learned of the engines' KV capacity (for its result). */
export interface TemporalEffects extends Effects {
  engineKvCapacity(): RankKvCapacity[];
}

type Effects = IterationEffects<Suspension>;

/** Groups ranks by node (one activity per node instead of one per rank). */
function nodeGroups(spec: RunSpec, ranks: readonly RankId[]): { node: number; ranks: RankId[] }[] {
  const byNode = new Map<number, RankId[]>();
  for (const rank of ranks) {
    const node = spec.layout.ranks[rank]?.node;
    if (node === undefined) throw ApplicationFailure.nonRetryable(`rank ${rank} is not in the layout`);
    byNode.set(node, [...(byNode.get(node) ?? []), rank]);
  }
  return [...byNode.entries()].map(([node, onNode]) => ({ node, ranks: onNode }));
}

export function temporalEffects(ctx: TemporalEffectsContext): TemporalEffects {
  const shards = new ShardRunner(ctx.spec, ctx.iteration, ctx.activities, ctx.lost, ctx.releasedAtShrink, ctx.engineKvCapacity);
  const executionTag = workflowInfo().runId.slice(0, 8);
  return {
    now: () => Date.now(),
    phaseEntered: (report) => reportPhase(ctx, report),
    poolChanged: () => undefined,
    // Unique per execution (attempts and operator resumes alike): fences earlier shards out of the store.
    shardId: (rank, serial) => shardId(ctx.iteration, executionTag, rank, serial),
    launchShards: (refs, version) => shards.launch(refs, version),
    ...bookkeepingEffects(ctx, shards),
    ...nodeEffects(ctx, shards),
    ...trainerEffects(ctx, shards),
    ...kvCapacityEffects(ctx, shards),
    sleep: (ms) => awaiting(sleep(ms)),
    runningSamples: () => {
      throw ApplicationFailure.nonRetryable("the 'adaptive' shrink trigger needs per-sample progress the workflow does not observe; use 'batch-ready'");
    },
    inFlightWork: (): RankWork[] => {
      throw ApplicationFailure.nonRetryable("the 'least-work' release policy needs in-flight work the workflow does not observe; use 'fixed'");
    },
    nonCancellable: <T>(step: Step<Suspension, T>) => awaiting(CancellationScope.nonCancellable(() => drive(step))),
    reportedKvCapacity: () => shards.kvCapacity,
    engineKvCapacity: () => [...shards.kvCapacity].map(([rank, tokens]) => ({ rank, tokens })).sort((a, b) => a.rank - b.rank),
    lostRanks: () => ctx.lost.ranks,
    trainerNodeLost: () => ctx.lost.trainerNode !== undefined,
    isLostNode: (error) => isLost(error),
  };
}

const isLost = isLostNodeError;

/**
 * The engines' KV capacity read per node, best effort: a node that does not answer within the
 * heartbeat timeout, or fails, leaves its ranks without a report for now (logged), as a shard whose
 * read failed does. Each answer goes where the shards' reports go.
 */
function kvCapacityEffects(ctx: TemporalEffectsContext, shards: ShardRunner): Pick<Effects, 'readKvCapacity'> {
  const runId = ctx.spec.runId;
  return {
    *readKvCapacity(ranks) {
      const reads = nodeGroups(ctx.spec, ranks).map(({ node, ranks: onNode }) =>
        ctx.activities
          .bestEffort(onNode[0]!)
          .readKvCapacity.executeWithOptions({ summary: `read KV capacity node ${node} ranks ${rankRanges(onNode)}` }, [{ runId, ranks: onNode }])
          .then(
            (reports) => {
              checkPostcondition(`KV capacity read on node ${node}: answers only for its ranks asked, once each`, reports.every((report) => onNode.includes(report.rank)) && new Set(reports.map((report) => report.rank)).size === reports.length, () => JSON.stringify(reports));
              for (const { rank, tokens } of reports) shards.kvCapacity.set(rank, tokens);
            },
            (error: unknown) => log.warn(`iteration ${ctx.iteration + 1}: KV capacity read on node ${node} failed; ranks ${rankRanges(onNode)} stay without a report for now: ${describeError(error)}`),
          ),
      );
      yield* awaiting(Promise.all(reads));
    },
  };
}

/** Search attribute, current details and the progress query's answer: commands and state only, no round trip. */
function reportPhase(ctx: TemporalEffectsContext, report: PhaseReport): void {
  upsertSearchAttributes([{ key: PHASE_KEY, value: report.phase }]);
  setCurrentDetails(
    `iteration ${ctx.iteration + 1}: ${report.phase} · weights v${report.version} · samples running ${report.samplesRunning}, ` +
      `completed ${report.samplesCompleted}, waiting ${report.samplesWaiting} · batch ${report.batchSamples}`,
  );
  ctx.onProgress({ iteration: ctx.iteration, ...report });
}

type BookkeepingEffects = Pick<
  Effects,
  'recoverFromStore' | 'dropSamples' | 'admitAndLaunch' | 'beginAdmitAndLaunch' | 'awaitAdmitAndLaunch' | 'awaitBatch' | 'stopShards' | SealEffectNames
>;
type SealEffectNames = 'beginSealBatch' | 'awaitSealBatch' | 'finishSeal';

/** Creates the admitted samples' records (a local activity or an activity of its own, by `proxy`). */
function admit(proxy: IterationActivities['bookkeeping'] | IterationActivities['background'], runId: string, ids: number[], version: number): Promise<unknown> {
  return proxy.admitSamples.executeWithOptions({ summary: `admit ${countOf(ids.length, 'sample')} at v${version}` }, [{ runId, ids, version }]);
}

function bookkeepingEffects(ctx: TemporalEffectsContext, shards: ShardRunner): BookkeepingEffects {
  const { spec, iteration } = ctx;
  const store = ctx.activities.bookkeeping;
  const runId = spec.runId;
  const admission = begunWork<void>('admission');
  return {
    ...sealEffects(ctx),
    *recoverFromStore({ waiting, fromId }) {
      // Both reads are independent: issued together they cost one round trip.
      const [seen, sealed] = yield* awaiting(
        Promise.all([
          store.describeSamples.executeWithOptions({ summary: `recover: describe ${countOf(waiting.length, 'waiting sample')} and ids from ${fromId}` }, [{ runId, ids: waiting, fromId }]),
          store.readSealedBatch.executeWithOptions({ summary: `recover: sealed batch of iteration ${iteration + 1}?` }, [{ runId, iteration }]),
        ]),
      );
      return { seen, sealed };
    },
    *dropSamples(ids, reason) {
      yield* awaiting(store.dropSamples.executeWithOptions({ summary: `drop ${countOf(ids.length, 'sample')} (${reason})` }, [{ runId, ids, reason }]));
    },
    *admitAndLaunch({ ids, version, shards: placed }) {
      yield* awaiting(admit(store, runId, ids, version));
      shards.launch(placed, version);
    },
    beginAdmitAndLaunch({ ids, version, shards: placed }) {
      // An activity of its own: a local activity would hold the workflow task, and with it every
      // command issued beside it, until it ends.
      admission.begin(
        admit(ctx.activities.background, runId, ids, version).then(() => {
          shards.launch(placed, version);
        }),
      );
    },
    awaitAdmitAndLaunch: () => admission.await(),
    *awaitBatch({ candidates, batchSize }) {
      const summary = `await batch of ${batchSize} among ${candidates.length} candidates`;
      const watch = () => ctx.activities.batchWatcher.awaitBatch.executeWithOptions({ summary }, [{ runId, iteration, candidates, batchSize }]);
      const result = yield* awaiting(shards.unlessShardFails(() => Promise.race([watch(), shards.everyShardEnded()])));
      return result?.sampleIds;
    },
    *stopShards({ shards: refs, migration }) {
      if (migration !== 'keep-prefix') throw ApplicationFailure.nonRetryable(`migration policy '${migration}': the rollout shards keep the prefix of an interrupted turn`);
      const { outcomes: reported, failures } = yield* awaiting(shards.stop(refs));
      // Shards that reported no outcome (cancelled before their answer, failed, lost) settle from the store.
      const unreported = refs.filter((ref) => !reported.has(ref.id));
      if (unreported.length > 0) {
        const summary = `settle ${countOf(unreported.length, 'shard')} (ranks ${rankRanges([...new Set(unreported.map((ref) => ref.rank))])})`;
        const settled = yield* awaiting(store.settleShards.executeWithOptions({ summary }, [{ runId, shards: unreported.map((ref) => ({ shardId: ref.id, sampleIds: ref.sampleIds })) }]));
        for (const outcome of settled) reported.set(outcome.shardId, outcome);
      }
      const outcomes = refs.flatMap((ref) => reported.get(ref.id) ?? []);
      checkPostcondition('stop: every stopped shard settled', outcomes.length === refs.length, () => JSON.stringify(refs.filter((ref) => !reported.has(ref.id)).map((ref) => ref.id)));
      return { outcomes, failures };
    },
  };
}

/** The batch's manifest (figures training needs), then its per-sample marking, awaited before the iteration ends. */
function sealEffects(ctx: TemporalEffectsContext): Pick<Effects, SealEffectNames> {
  const { spec, iteration } = ctx;
  const runId = spec.runId;
  let marking: Promise<unknown> | undefined;
  const manifest = begunWork<SealedBatchFigures>('batch manifest');
  return {
    beginSealBatch({ sampleIds, fromVersion, besideOtherWork }) {
      // Beside the shrink's stop, an activity of its own: training needs the manifest, the stop
      // does not. Marking each sample (store I/O per sample) follows it, alongside the shrink and
      // training, and is awaited before the iteration ends.
      const writing = besideOtherWork ? ctx.activities.background : ctx.activities.bookkeeping;
      manifest.begin(
        writing.writeBatchManifest
          .executeWithOptions({ summary: `seal batch manifest (${countOf(sampleIds.length, 'sample')})` }, [{ runId, iteration, fromVersion, sampleIds }])
          .then((figures) => {
            marking = startMarking(ctx, sampleIds, fromVersion);
            return figures;
          }),
      );
    },
    awaitSealBatch: () => manifest.await(),
    *finishSeal({ sampleIds, fromVersion }) {
      // Idempotent: also completes the marking of an earlier attempt that sealed the batch.
      yield* awaiting(marking ?? startMarking(ctx, sampleIds, fromVersion));
    },
  };
}

function startMarking(ctx: TemporalEffectsContext, sampleIds: number[], fromVersion: number): Promise<unknown> {
  const marking = ctx.activities.background.sealBatch.executeWithOptions({ summary: `mark ${countOf(sampleIds.length, 'batch sample')}` }, [
    { runId: ctx.spec.runId, iteration: ctx.iteration, fromVersion, sampleIds },
  ]);
  marking.catch(() => undefined); // observed by finishSeal
  return marking;
}

type NodeGroup = { node: number; ranks: RankId[] };

function nodeEffects(ctx: TemporalEffectsContext, shards: ShardRunner): Pick<Effects, 'resumeMemory' | 'resumeMemorySettled' | 'syncWeights' | 'syncAndReload'> {
  const { spec, lost, activities } = ctx;
  const runId = spec.runId;
  const onGroup = <T>(group: NodeGroup, call: (node: ReturnType<IterationActivities['rank']>, summary: string) => Promise<T>, summary: string, after = ''): Promise<T> =>
    lost.onRank(group.ranks[0]!, call(activities.rank(group.ranks[0]!), `${summary} node ${group.node} ranks ${rankRanges(group.ranks)}${after}`));
  const resume = (group: NodeGroup, tags: MemoryTag[]) =>
    onGroup(group, (node, summary) => node.resumeNodeMemory.executeWithOptions({ summary }, [{ runId, ranks: group.ranks, tags }]), `reload ${tags.join('+')}`);
  const diskSync = (ranks: readonly RankId[], version: number) =>
    Promise.all(
      nodeGroups(spec, ranks).map((group) =>
        onGroup(group, (node, summary) => node.syncNodeWeights.executeWithOptions({ summary }, [{ runId, ranks: group.ranks, version }]), `sync weights v${version}`),
      ),
    );
  // The broadcast's sender: the train leader.
  const trainerLeader = trainNodes(spec.layout)[0]!;
  const exportOnLeader = (version: number) =>
    lost.onTrainerNode(
      trainerLeader,
      activities.trainer(trainerLeader).exportWeights.executeWithOptions({ summary: `export weights v${version} node ${trainerLeader}` }, [{ runId, node: trainerLeader, version }]),
    );
  return {
    *resumeMemory(ranks, tags) {
      yield* awaiting(Promise.all(nodeGroups(spec, ranks).map((group) => resume(group, tags))));
    },
    *resumeMemorySettled(ranks, tags) {
      const groups = nodeGroups(spec, ranks);
      const results = yield* awaiting(Promise.allSettled(groups.map((group) => resume(group, tags))));
      // A rank found lost while reloading joins the lost ones instead of failing the restore.
      return results.flatMap((result, i): ReloadFailure[] => (result.status === 'rejected' && !isLost(result.reason) ? [{ ranks: groups[i]!.ranks, error: result.reason }] : []));
    },
    *syncWeights(ranks, version, broadcast) {
      // A broadcast run exports no file per version: the trainer exports this one for the loading ranks.
      if (broadcast !== undefined) yield* awaiting(exportOnLeader(version));
      yield* awaiting(diskSync(ranks, version));
    },
    *syncAndReload({ ranks, reload, version, broadcast }) {
      if (broadcast !== undefined) {
        if (reload.length > 0) {
          const resumed = yield* awaiting(Promise.all(nodeGroups(spec, reload).map((group) => resume(group, ['weights']))));
          // An engine that restarted while its rank was released (no shard met it) serves weights
          // older than the last sync's and holds no weight group: the sync forms a new one.
          for (const rank of restartedWhileReleased(resumed, version - 1)) shards.restartedRanks.add(rank);
        }
        const sync = createBroadcastSync({
          spec: { ...spec, weightSync: broadcast.spec },
          groupTag: `i${ctx.iteration}-${workflowInfo().runId.slice(0, 8)}`,
          trainerNode: trainerLeader,
          nodeGroups: (members) => nodeGroups(spec, members).map((group) => group.ranks),
          diskSync,
        });
        const outcome = yield* awaiting(sync.syncWeights(ranks, version, broadcast.group, [...shards.restartedRanks]));
        if (reload.length > 0) yield* awaiting(Promise.all(nodeGroups(spec, reload).map((group) => resume(group, ['kv_cache']))));
        return outcome.group;
      }
      const reloading = new Set(reload);
      const step = (group: NodeGroup) => {
        const here = group.ranks.filter((rank) => reloading.has(rank));
        const reloaded = here.length === 0 ? '' : `, reload ranks ${rankRanges(here)}`;
        return onGroup(group, (node, summary) => node.syncAndReloadNode.executeWithOptions({ summary }, [{ runId, ranks: group.ranks, version, reload: here }]), `sync weights v${version}`, reloaded);
      };
      yield* awaiting(Promise.all(nodeGroups(spec, ranks).map(step)));
      return undefined;
    },
  };
}

/** Ranks whose engine serves a version below `lastSynced` once resumed (results of older workers report none). */
function restartedWhileReleased(results: readonly NodeResumeResult[], lastSynced: number): RankId[] {
  return results.flatMap((result) => (result.served ?? []).filter((rank) => rank.weightVersion < lastSynced).map((rank) => rank.rank));
}

function trainerEffects(
  ctx: TemporalEffectsContext,
  shards: ShardRunner,
): Pick<Effects, 'beginReleaseAndOnloadTrainer' | 'awaitReleaseAndOnloadTrainer' | 'trainStep' | 'beginTrainerOffload' | 'awaitTrainerOffload' | 'trainerOffload'> {
  const { spec, lost, activities, iteration } = ctx;
  const runId = spec.runId;
  const nodes = trainNodes(spec.layout);
  const onEachNode = <T>(call: (node: number) => Promise<T>): Promise<T[]> => Promise.all(nodes.map((node) => lost.onTrainerNode(node, call(node))));
  const offload = () => onEachNode((node) => activities.trainer(node).trainerOffload.executeWithOptions({ summary: `trainer offload node ${node}` }, [{ runId, node }]));
  const offloading = begunWork<unknown>('trainer offload');
  const onloading = begunWork<unknown>('release and trainer onload');
  return {
    beginReleaseAndOnloadTrainer(release) {
      // Released ranks on a train node are released by that node's onload activity; any others
      // (an operator's larger shrink set) by their own node's activity, alongside.
      const trainNodeSet = new Set(nodes);
      const groups = nodeGroups(spec, release);
      const elsewhere = groups.filter((group) => !trainNodeSet.has(group.node));
      const releaseElsewhere = elsewhere.map((group) =>
        lost.onRank(group.ranks[0]!, activities.rank(group.ranks[0]!).releaseNodeMemory.executeWithOptions({ summary: `offload node ${group.node} ranks ${rankRanges(group.ranks)}` }, [{ runId, ranks: group.ranks, tags: [...ALL_MEMORY_TAGS] }])),
      );
      const onload = (node: number) => {
        const releaseRanks = groups.find((group) => group.node === node)?.ranks ?? [];
        const summary = releaseRanks.length === 0 ? `trainer onload node ${node}` : `offload node ${node} ranks ${rankRanges(releaseRanks)}, trainer onload`;
        return activities.trainer(node).trainerOnload.executeWithOptions({ summary }, [{ runId, node, ...(releaseRanks.length === 0 ? {} : { releaseRanks }) }]);
      };
      onloading.begin(Promise.all([...releaseElsewhere, onEachNode(onload)]));
    },
    *awaitReleaseAndOnloadTrainer() {
      yield* onloading.await();
    },
    *trainStep({ fromVersion, maxTokenLag }) {
      const leader = nodes[0];
      const step = (node: number) =>
        activities.trainer(node).trainStep.executeWithOptions({ summary: `train step v${fromVersion}→v${fromVersion + 1} node ${node}${node === leader ? ' (leader)' : ''}` }, [
          { runId, node, iteration, fromVersion, leader: node === leader, ...(maxTokenLag === undefined ? {} : { maxTokenLag }) },
        ]);
      const results = yield* awaiting(shards.unlessShardFails(() => onEachNode(step)));
      return results.map((result) => result.newVersion);
    },
    beginTrainerOffload() {
      offloading.begin(offload());
    },
    *awaitTrainerOffload() {
      yield* offloading.await();
    },
    *trainerOffload() {
      yield* awaiting(offload());
    },
  };
}
