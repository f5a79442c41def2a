/**
 * A real run's timeline, read back from Temporal: the iteration workflows'
 * (`timeshare-<runId>-iter-<k>`) histories hold every GPU activity with its start and close
 * times, so the chart is exactly what the cluster did, in wall time.
 *
 * Lanes: one per rollout rank (labelled with its GPUs), plus one per train node for train GPUs
 * that no rollout rank uses (disaggregated). Roles:
 *   runRolloutShard                              → rollout (on the shard's rank)
 *   runRolloutShards                             → rollout (a node's group of shards: on each member's rank)
 *   releaseRankMemory / releaseNodeMemory        → offload (per-node activities: on each of their ranks)
 *   trainerOnload … trainStep … trainerOffload   → train, from the first call's start to the last
 *                                                  one's end (every lane holding that node's train GPUs)
 *   syncRankWeights / syncNodeWeights            → sync
 *   syncAndReloadNode                            → onload on the ranks it reloads, sync on the others
 *   trainerOnload with releaseRanks              → offload on those ranks (they release, then the trainer onloads)
 *   resumeRankMemory / resumeNodeMemory          → onload
 * Orchestrator activities (store bookkeeping, no GPU) are not drawn; idle fills the rest.
 * Activity inputs are decoded with the default (JSON) payload converter, after the client's payload
 * codecs (if the run encrypts its payloads) in fetchIterationHistories.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { tsToMs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { z } from 'zod';
import { checkIntRange, checkNonEmpty, checkPostcondition, ValidationError } from '../validation/patterns';
import { iterationWorkflowId, rankQueue, runWorkflowId, trainerQueue } from '../contract/naming';
import { checkTimelines } from './schema';
import type { Timeline, TimelineRole, TimelineSegment } from './types';

type History = temporal.api.history.v1.IHistory;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const EventType = temporal.api.enums.v1.EventType;

export interface IterationHistory {
  iteration: number;
  history: History;
}

// ---- what the histories must contain (validated: a history is input) -------------------------

const id = z.number().int().nonnegative();

/** The parts of the iteration workflow's input (IterationInput) the timeline needs. */
const iterationInputSchema = z.object({
  iteration: id,
  spec: z.object({
    runId: z.string().min(1),
    taskQueuePrefix: z.string().min(1),
    layout: z.object({
      strategy: z.string().min(1),
      nodes: z.number().int().positive(),
      gpusPerNode: z.number().int().positive(),
      ranks: z.array(z.object({ id, node: id, gpus: z.array(id).min(1) })).min(1),
      trainGpus: z.array(id),
      shrinkRanks: z.array(id),
    }),
  }),
});
type IterationInputView = z.infer<typeof iterationInputSchema>;
type LayoutView = IterationInputView['spec']['layout'];

const rankInputSchema = z.object({ rank: id });
const nodeInputSchema = z.object({ node: id });
const nodeRanksInputSchema = z.object({ ranks: z.array(id).min(1) });
const shardGroupInputSchema = z.object({ shards: z.array(rankInputSchema).min(1) });

const RANK_ROLES: Readonly<Record<string, TimelineRole>> = {
  runRolloutShard: 'rollout',
  releaseRankMemory: 'offload',
  syncRankWeights: 'sync',
  resumeRankMemory: 'onload',
};
/** One activity for all the ranks of a node, sent to one of their queues. */
const NODE_RANKS_ROLES: Readonly<Record<string, TimelineRole>> = {
  releaseNodeMemory: 'offload',
  syncNodeWeights: 'sync',
  resumeNodeMemory: 'onload',
};
const TRAINER_ACTIVITIES = new Set(['trainerOnload', 'trainStep', 'trainerOffload']);
const syncAndReloadInputSchema = z.object({ ranks: z.array(id).min(1), reload: z.array(id) });
const trainerOnloadInputSchema = z.object({ node: id, releaseRanks: z.array(id).optional() });

/** Where two roles overlap on one lane, the chart shows the first in this order. */
const ROLE_PRIORITY: readonly TimelineRole[] = ['offload', 'onload', 'sync', 'train', 'rollout'];

// ---- decoding -----------------------------------------------------------------------------------

function decodeFirstPayload<T>(payloads: temporal.api.common.v1.IPayloads | null | undefined, schema: z.ZodType<T>, what: string): T {
  const payload = payloads?.payloads?.[0];
  if (payload === undefined || payload === null) throw new Error(`${what}: no input payload in the history`);
  let value: unknown;
  try {
    value = defaultPayloadConverter.fromPayload(payload as Payload);
  } catch (error) {
    throw new Error(`${what}: cannot decode the input payload with the default (JSON) converter: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new Error(`${what}: unexpected input: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ')}`);
  }
  return parsed.data;
}

function eventMs(event: HistoryEvent, what: string): number {
  if (event.eventTime === null || event.eventTime === undefined) throw new Error(`${what}: event ${String(event.eventId)} has no eventTime`);
  return tsToMs(event.eventTime);
}

/** One GPU activity as the history records it (times absolute, ms since the epoch). */
interface ActivityRun {
  type: string;
  taskQueue: string;
  input: temporal.api.common.v1.IPayloads | null | undefined;
  startedMs?: number;
  endedMs?: number;
}

interface IterationView {
  iteration: number;
  input: IterationInputView;
  startedMs: number;
  /** The close event's time, or the last event's for an iteration still running. */
  endedMs: number;
  activities: ActivityRun[];
}

function readIteration({ iteration, history }: IterationHistory): IterationView {
  const what = `iteration ${iteration} history`;
  const events = history.events ?? [];
  const first = events[0];
  if (first?.eventType !== EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) {
    throw new Error(`${what}: does not start with WorkflowExecutionStarted (got ${events.length} events)`);
  }
  const input = decodeFirstPayload(first.workflowExecutionStartedEventAttributes?.input, iterationInputSchema, `${what}: iterationWorkflow input`);
  checkPostcondition(`${what}: input names iteration ${iteration}`, input.iteration === iteration, () => String(input.iteration));
  const byScheduledId = new Map<string, ActivityRun>();
  const run = (scheduledEventId: unknown): ActivityRun | undefined => byScheduledId.get(String(scheduledEventId));
  for (const event of events) {
    switch (event.eventType) {
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
        const attributes = event.activityTaskScheduledEventAttributes;
        byScheduledId.set(String(event.eventId), {
          type: attributes?.activityType?.name ?? '',
          taskQueue: attributes?.taskQueue?.name ?? '',
          input: attributes?.input,
        });
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: {
        const activity = run(event.activityTaskStartedEventAttributes?.scheduledEventId);
        if (activity !== undefined) activity.startedMs = eventMs(event, what);
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
      case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
      case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
      case EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: {
        const attributes =
          event.activityTaskCompletedEventAttributes ??
          event.activityTaskFailedEventAttributes ??
          event.activityTaskTimedOutEventAttributes ??
          event.activityTaskCanceledEventAttributes;
        const activity = run(attributes?.scheduledEventId);
        if (activity !== undefined) activity.endedMs = eventMs(event, what);
        break;
      }
      default:
        break;
    }
  }
  const last = events[events.length - 1] as HistoryEvent;
  return { iteration, input, startedMs: eventMs(first, what), endedMs: eventMs(last, what), activities: [...byScheduledId.values()] };
}

// ---- lanes --------------------------------------------------------------------------------------

function gpuList(gpus: readonly number[]): string {
  const sorted = [...gpus].sort((a, b) => a - b);
  const contiguous = sorted.every((gpu, index) => gpu === (sorted[0] as number) + index);
  if (sorted.length > 2 && contiguous) return `${sorted[0]}-${sorted[sorted.length - 1]}`;
  return sorted.join(',');
}

interface LaneMap {
  lanes: string[];
  rankLane(rank: number): string;
  /** Lanes whose GPUs the trainer on `node` uses. */
  trainLanes(node: number): string[];
  note: string;
}

function laneMap(layout: LayoutView): LaneMap {
  const nodeOf = (gpu: number): number => Math.floor(gpu / layout.gpusPerNode);
  const trainSet = new Set(layout.trainGpus);
  const rankLanes = layout.ranks.map((rank) => `rank ${rank.id} · GPU ${gpuList(rank.gpus)}`);
  layout.ranks.forEach((rank, index) => checkPostcondition('history layout: rank ids are 0..n-1', rank.id === index, () => JSON.stringify(rank)));
  const inRank = new Set(layout.ranks.flatMap((rank) => rank.gpus));
  const trainOnly = new Map<number, number[]>();
  for (const gpu of layout.trainGpus) {
    if (inRank.has(gpu)) continue;
    trainOnly.set(nodeOf(gpu), [...(trainOnly.get(nodeOf(gpu)) ?? []), gpu]);
  }
  const trainOnlyLanes = new Map([...trainOnly].map(([node, gpus]) => [node, `train node ${node} · GPU ${gpuList(gpus)}`]));
  const lanes = [...rankLanes, ...trainOnlyLanes.values()];
  const note =
    `lanes: one per rollout rank (its GPUs)${trainOnlyLanes.size > 0 ? ', one per train node for train-only GPUs' : ''}; ` +
    `train drawn on every lane holding train GPUs ${gpuList(layout.trainGpus)}`;
  return {
    lanes,
    note,
    rankLane(rank) {
      checkIntRange('rank in an activity input', rank, 0, layout.ranks.length - 1);
      return rankLanes[rank] as string;
    },
    trainLanes(node) {
      const onNode = layout.ranks.filter((rank) => rank.gpus.some((gpu) => trainSet.has(gpu) && nodeOf(gpu) === node)).map((rank) => rankLanes[rank.id] as string);
      const own = trainOnlyLanes.get(node);
      const result = own === undefined ? onNode : [...onNode, own];
      checkNonEmpty(`train lanes of node ${node}`, result);
      return result;
    },
  };
}

// ---- intervals → segments -----------------------------------------------------------------------

interface Interval {
  startMs: number;
  endMs: number;
}

function union(intervals: Interval[]): Interval[] {
  const sorted = [...intervals].sort((a, b) => a.startMs - b.startMs);
  const merged: Interval[] = [];
  for (const interval of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && interval.startMs <= last.endMs) last.endMs = Math.max(last.endMs, interval.endMs);
    else merged.push({ ...interval });
  }
  return merged;
}

function subtract(intervals: Interval[], taken: Interval[]): Interval[] {
  let rest = intervals;
  for (const cut of taken) {
    rest = rest.flatMap((interval) => {
      if (cut.endMs <= interval.startMs || cut.startMs >= interval.endMs) return [interval];
      const parts: Interval[] = [];
      if (cut.startMs > interval.startMs) parts.push({ startMs: interval.startMs, endMs: cut.startMs });
      if (cut.endMs < interval.endMs) parts.push({ startMs: cut.endMs, endMs: interval.endMs });
      return parts;
    });
  }
  return rest;
}

/**
 * Per lane: the union of each role's intervals, overlaps resolved by ROLE_PRIORITY, gaps within
 * [0, endMs] filled with idle. The result never overlaps on a lane.
 */
function flattenLane(lane: string, byRole: Map<TimelineRole, Interval[]>, endMs: number, label: (ms: number) => string): TimelineSegment[] {
  const segments: TimelineSegment[] = [];
  let taken: Interval[] = [];
  for (const role of ROLE_PRIORITY) {
    const visible = subtract(union(byRole.get(role) ?? []), taken).filter((interval) => interval.endMs > interval.startMs);
    for (const interval of visible) segments.push({ lane, role, ...interval, label: label(interval.startMs) });
    taken = union([...taken, ...visible]);
  }
  for (const gap of subtract([{ startMs: 0, endMs }], taken)) {
    if (gap.endMs > gap.startMs) segments.push({ lane, role: 'idle', ...gap, label: label(gap.startMs) });
  }
  return segments.sort((a, b) => a.startMs - b.startMs);
}

// ---- the timeline -------------------------------------------------------------------------------

/**
 * The timeline of the given iterations of one run (one panel), from their workflow histories.
 * Times are relative to the first iteration's start. Throws, naming the iteration and event, if a
 * history does not look like an iteration workflow of this project.
 */
export function timelineFromIterationHistories(histories: readonly IterationHistory[], options: { title?: string } = {}): Timeline {
  checkNonEmpty('iteration histories', histories);
  const views = [...histories].sort((a, b) => a.iteration - b.iteration).map(readIteration);
  const firstView = views[0] as IterationView;
  const { spec } = firstView.input;
  const layoutJson = JSON.stringify(spec.layout);
  for (const view of views) {
    checkPostcondition(`iteration ${view.iteration}: same run as iteration ${firstView.iteration}`, view.input.spec.runId === spec.runId, () => view.input.spec.runId);
    checkPostcondition(`iteration ${view.iteration}: same layout as iteration ${firstView.iteration}`, JSON.stringify(view.input.spec.layout) === layoutJson, () =>
      JSON.stringify(view.input.spec.layout),
    );
  }
  const lanes = laneMap(spec.layout);
  const originMs = firstView.startedMs;
  const endMs = Math.max(...views.map((view) => view.endedMs)) - originMs;
  const intervals = new Map<string, Map<TimelineRole, Interval[]>>(lanes.lanes.map((lane) => [lane, new Map()]));
  const add = (lane: string, role: TimelineRole, interval: Interval): void => {
    const byRole = intervals.get(lane) as Map<TimelineRole, Interval[]>;
    byRole.set(role, [...(byRole.get(role) ?? []), interval]);
  };
  /** A per-node activity is sent to the queue of one of the ranks it works on. */
  const checkOnOneOf = (what: string, taskQueue: string, ranks: readonly number[]): void =>
    checkPostcondition(`${what}: task queue is one of ranks ${JSON.stringify(ranks)}'s`, ranks.some((rank) => taskQueue === rankQueue(spec.taskQueuePrefix, rank)), () => taskQueue);

  for (const view of views) {
    const trainSpans = new Map<number, Interval>();
    for (const activity of view.activities) {
      // Never started (e.g. cancelled while queued): it used no GPU.
      if (activity.startedMs === undefined) continue;
      const interval = { startMs: activity.startedMs - originMs, endMs: (activity.endedMs ?? view.endedMs) - originMs };
      const what = `iteration ${view.iteration}: ${activity.type} on ${activity.taskQueue}`;
      const rankRole = RANK_ROLES[activity.type];
      if (rankRole !== undefined) {
        const { rank } = decodeFirstPayload(activity.input, rankInputSchema, what);
        checkPostcondition(`${what}: task queue is rank ${rank}'s`, activity.taskQueue === rankQueue(spec.taskQueuePrefix, rank), () => activity.taskQueue);
        add(lanes.rankLane(rank), rankRole, interval);
      } else if (NODE_RANKS_ROLES[activity.type] !== undefined) {
        const { ranks } = decodeFirstPayload(activity.input, nodeRanksInputSchema, what);
        checkOnOneOf(what, activity.taskQueue, ranks);
        for (const rank of ranks) add(lanes.rankLane(rank), NODE_RANKS_ROLES[activity.type] as TimelineRole, interval);
      } else if (activity.type === 'runRolloutShards') {
        const ranks = decodeFirstPayload(activity.input, shardGroupInputSchema, what).shards.map((shard) => shard.rank);
        checkOnOneOf(what, activity.taskQueue, ranks);
        for (const rank of ranks) add(lanes.rankLane(rank), 'rollout', interval);
      } else if (activity.type === 'syncAndReloadNode') {
        const { ranks, reload } = decodeFirstPayload(activity.input, syncAndReloadInputSchema, what);
        checkOnOneOf(what, activity.taskQueue, ranks);
        for (const rank of ranks) add(lanes.rankLane(rank), reload.includes(rank) ? 'onload' : 'sync', interval);
      } else if (TRAINER_ACTIVITIES.has(activity.type)) {
        const { node } = decodeFirstPayload(activity.input, nodeInputSchema, what);
        if (activity.type === 'trainerOnload') {
          const { releaseRanks } = decodeFirstPayload(activity.input, trainerOnloadInputSchema, what);
          for (const rank of releaseRanks ?? []) add(lanes.rankLane(rank), 'offload', interval);
        }
        checkPostcondition(`${what}: task queue is train node ${node}'s`, activity.taskQueue === trainerQueue(spec.taskQueuePrefix, node), () => activity.taskQueue);
        const span = trainSpans.get(node);
        trainSpans.set(node, span === undefined ? interval : { startMs: Math.min(span.startMs, interval.startMs), endMs: Math.max(span.endMs, interval.endMs) });
      }
    }
    // The trainer holds its GPUs from its onload to its offload (or the step's end when it does
    // not share them), including the workflow's turns between those calls.
    for (const [node, span] of trainSpans) for (const lane of lanes.trainLanes(node)) add(lane, 'train', span);
  }

  // Labels, marks and the title number iterations from 1, as the CLI's progress lines do
  // (workflow `-iter-<k>` is iteration k + 1).
  const iterationAt = (ms: number): string => {
    let current = firstView.iteration;
    for (const view of views) if (view.startedMs - originMs <= ms) current = view.iteration;
    return `iter ${current + 1}`;
  };
  const segments = lanes.lanes.flatMap((lane) => flattenLane(lane, intervals.get(lane) as Map<TimelineRole, Interval[]>, endMs, iterationAt));
  const range = views.length === 1 ? `iteration ${firstView.iteration + 1}` : `iterations ${firstView.iteration + 1}-${(views[views.length - 1] as IterationView).iteration + 1}`;
  const [timeline] = checkTimelines(
    [
      {
        title: options.title ?? `run '${spec.runId}': ${spec.layout.strategy}, ${range}`,
        source: 'temporal-history',
        strategy: spec.layout.strategy,
        lanes: lanes.lanes,
        segments,
        endMs,
        marks: views.map((view) => ({ atMs: view.startedMs - originMs, label: `iter ${view.iteration + 1}` })),
        note: lanes.note,
      },
    ],
    `timeline of run '${spec.runId}'`,
  );
  return timeline as Timeline;
}

// ---- fetching -----------------------------------------------------------------------------------

function isNotFound(error: unknown): boolean {
  return error instanceof WorkflowNotFoundError;
}

/**
 * The histories of a run's iterations `from`..`to` (inclusive; `to` defaults to the last one
 * started), numbered as their workflow ids are (from 0; a person reads k + 1). Iterations are found by their deterministic workflow ids, which also covers a run
 * that continued as new. Throws if the run or iteration `from` does not exist.
 */
export async function fetchIterationHistories(client: Client, runId: string, range: { from?: number; to?: number } = {}): Promise<IterationHistory[]> {
  const from = range.from ?? 0;
  try {
    await client.workflow.getHandle(runWorkflowId(runId)).describe();
  } catch (error) {
    if (isNotFound(error)) throw new ValidationError('VAL_SUBSET', 'run id', runId, `no workflow '${runWorkflowId(runId)}' on this Temporal namespace`);
    throw error;
  }
  const histories: IterationHistory[] = [];
  for (let iteration = from; range.to === undefined || iteration <= range.to; iteration++) {
    const handle = client.workflow.getHandle(iterationWorkflowId(runId, iteration));
    try {
      // describe() reports a missing workflow as WorkflowNotFoundError (fetchHistory as a bare gRPC error).
      await handle.describe();
    } catch (error) {
      if (!isNotFound(error)) throw error;
      if (histories.length === 0 || range.to !== undefined) {
        throw new ValidationError('VAL_INT_RANGE', 'iteration', String(iteration + 1), `run '${runId}' has no iteration ${iteration + 1} (workflow '${iterationWorkflowId(runId, iteration)}')`);
      }
      break;
    }
    histories.push({ iteration, history: await decodeInputs(client, await handle.fetchHistory()) });
  }
  return histories;
}

/**
 * A run with a payload codec (docs/security.md) stores its inputs encrypted: decode the inputs the
 * timeline reads with the client's codecs, as the client does for results. Without codecs the
 * history is returned as it is.
 */
async function decodeInputs(client: Client, history: History): Promise<History> {
  const codecs = client.options.loadedDataConverter.payloadCodecs;
  if (codecs.length === 0) return history;
  const decode = async (payloads: temporal.api.common.v1.IPayloads | null | undefined): Promise<void> => {
    if (payloads?.payloads === undefined || payloads.payloads === null) return;
    let decoded = payloads.payloads as Payload[];
    for (const codec of [...codecs].reverse()) decoded = await codec.decode(decoded);
    payloads.payloads = decoded;
  };
  for (const event of history.events ?? []) {
    await decode(event.workflowExecutionStartedEventAttributes?.input);
    await decode(event.activityTaskScheduledEventAttributes?.input);
  }
  return history;
}
