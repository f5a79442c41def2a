/**
 * Control-plane figures read off recorded workflow histories: event count and encoded size, and
 * the moments of the phase transitions (from the server's event timestamps, so the figures are
 * what Temporal actually recorded, not what a worker believes it did).
 */
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { z } from 'zod';

type History = temporal.api.history.v1.IHistory;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const EventType = temporal.api.enums.v1.EventType;

/** Encoded proto size of a history: what the server stores and counts against its limits. */
export function historyBytes(history: History): number {
  return temporal.api.history.v1.History.encode(history).finish().length;
}

/** An event's server time in ms; an event without one is an error (a history the bench cannot time). */
export function eventMs(event: HistoryEvent): number {
  const time = event.eventTime;
  if (time === null || time === undefined) throw new Error(`history event ${String(event.eventId)} has no time`);
  return Number(time.seconds ?? 0) * 1000 + Math.floor((time.nanos ?? 0) / 1e6);
}

/**
 * The activity types of the local activities a history recorded, in order (from their markers:
 * the SDK's `core_local_activity` marker data names the type).
 */
export function localActivityTypes(history: History): string[] {
  return (history.events ?? []).flatMap((event) => {
    const marker = event.markerRecordedEventAttributes;
    if (marker?.markerName !== 'core_local_activity') return [];
    const data = marker.details?.data?.payloads?.[0]?.data;
    if (!data) throw new Error(`local activity marker at event ${String(event.eventId)} has no data`);
    const type = (JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: unknown }).activity_type;
    if (typeof type !== 'string') throw new Error(`local activity marker at event ${String(event.eventId)} names no activity type`);
    return [type];
  });
}

/** One activity as the history tells it (times in ms since the epoch; undefined = not reached). */
export interface ActivitySpan {
  name: string;
  taskQueue: string;
  scheduledEventId: number;
  scheduledMs: number;
  /** The activity's input as recorded (read for the ranks a shard or a group of shards runs on). */
  input?: temporal.api.common.v1.IPayloads | null;
  startedMs?: number;
  closedMs?: number;
  outcome?: 'completed' | 'failed' | 'timed-out' | 'cancelled';
}

/** Every activity of a history, in scheduling order. */
export function activitySpans(history: History): ActivitySpan[] {
  const byScheduled = new Map<number, ActivitySpan>();
  for (const event of history.events ?? []) {
    const ms = eventMs(event);
    switch (event.eventType) {
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
        const attributes = event.activityTaskScheduledEventAttributes;
        const name = attributes?.activityType?.name;
        const taskQueue = attributes?.taskQueue?.name;
        if (!name || !taskQueue) throw new Error(`activity scheduled at event ${String(event.eventId)} has no type or task queue`);
        const id = Number(event.eventId);
        byScheduled.set(id, { name, taskQueue, scheduledEventId: id, scheduledMs: ms, input: attributes?.input });
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        spanOf(byScheduled, event.activityTaskStartedEventAttributes?.scheduledEventId).startedMs = ms;
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        close(spanOf(byScheduled, event.activityTaskCompletedEventAttributes?.scheduledEventId), ms, 'completed');
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        close(spanOf(byScheduled, event.activityTaskFailedEventAttributes?.scheduledEventId), ms, 'failed');
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        close(spanOf(byScheduled, event.activityTaskTimedOutEventAttributes?.scheduledEventId), ms, 'timed-out');
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
        close(spanOf(byScheduled, event.activityTaskCanceledEventAttributes?.scheduledEventId), ms, 'cancelled');
        break;
      default:
        break;
    }
  }
  return [...byScheduled.values()].sort((a, b) => a.scheduledEventId - b.scheduledEventId);
}

function spanOf(spans: Map<number, ActivitySpan>, scheduledEventId: unknown): ActivitySpan {
  const span = spans.get(Number(scheduledEventId));
  if (span === undefined) throw new Error(`activity event refers to unknown scheduled event ${String(scheduledEventId)}`);
  return span;
}

function close(span: ActivitySpan, ms: number, outcome: NonNullable<ActivitySpan['outcome']>): void {
  span.closedMs = ms;
  span.outcome = outcome;
}

/** Which attempt of its workflow the history records (> 1: an earlier attempt failed). */
export function executionAttempt(history: History): number {
  const first = history.events?.[0];
  if (first?.eventType !== EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) throw new Error('history does not begin with the execution start');
  return first.workflowExecutionStartedEventAttributes?.attempt ?? 1;
}

/** Start and close of the workflow execution the history records. */
export function executionSpan(history: History): { startedMs: number; closedMs: number } {
  const events = history.events ?? [];
  const first = events[0];
  const last = events[events.length - 1];
  if (first?.eventType !== EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) throw new Error('history does not begin with the execution start');
  if (last?.eventType !== EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED) {
    throw new Error(`history does not end with a completed execution (last event: ${EventType[last?.eventType ?? 0]})`);
  }
  return { startedMs: eventMs(first), closedMs: eventMs(last) };
}

function required(what: string, values: (number | undefined)[]): number {
  const known = values.filter((value): value is number => value !== undefined);
  if (known.length === 0 || known.length !== values.length) throw new Error(`iteration history: ${what} not found`);
  return Math.max(...known);
}

/** The transition moments of one iteration workflow (ms since the epoch). */
export interface IterationMoments {
  startedMs: number;
  closedMs: number;
  /**
   * Every rank given samples before the batch watch began is rolling: its first shard started (a
   * group of shards, runRolloutShards, starts one on each of its members' ranks).
   */
  rolloutStartedMs: number;
  /** awaitBatch returned a full batch (the store poll saw it). */
  batchSeenMs: number;
  /** Every train node's trainStep has started. */
  trainStartedMs: number;
  /** Every train node's trainStep has completed. */
  trainDoneMs: number;
  /** The last activity of the iteration (expand's reload, or the weight sync) completed. */
  expandDoneMs: number;
  events: number;
  bytes: number;
  /** Workflow tasks that timed out or failed (a worker too slow or starved: each costs a retry and a replay). */
  workflowTaskTimeouts: number;
  /** Activities per type (how the event count splits). */
  activities: Record<string, number>;
}

export function iterationMoments(history: History): IterationMoments {
  const spans = activitySpans(history);
  const { startedMs, closedMs } = executionSpan(history);
  const trains = spans.filter((span) => span.name === 'trainStep');
  const firstWatch = spans.find((span) => span.name === 'awaitBatch');
  // No batch watch: samples carried over completed the batch, and the program took it at its first
  // workflow task; the shards it launched before training are the ones that keep rolling.
  const firstWaveEnd = firstWatch?.scheduledEventId ?? Math.min(...trains.map((span) => span.scheduledEventId));
  // Shards stopped before they started never rolled: they do not hold the rolling moment back.
  const shards = spans.filter((span) => SHARD_ACTIVITIES.has(span.name) && span.startedMs !== undefined);
  // Carried-over samples can complete the batch before any shard is launched: then the ranks
  // start rolling with the shards launched after the first watch.
  const beforeWatch = shards.filter((span) => span.scheduledEventId < firstWaveEnd);
  const firstWave = beforeWatch.length > 0 || firstWatch === undefined ? beforeWatch : shards;
  const watched = spans.filter((span) => span.name === 'awaitBatch' && span.outcome === 'completed');
  const activities: Record<string, number> = {};
  for (const span of spans) activities[span.name] = (activities[span.name] ?? 0) + 1;
  return {
    startedMs,
    closedMs,
    // An iteration that launched no shard at all (its batch complete from carried-over samples, no
    // admission) has no rolling moment of its own: its start stands for it.
    rolloutStartedMs: firstWave.length === 0 ? startedMs : required('first-wave rollout shards started', [...firstStartPerRank(firstWave).values()]),
    batchSeenMs: firstWatch === undefined ? firstWorkflowTaskDoneMs(history) : required('a completed awaitBatch', watched.slice(-1).map((span) => span.closedMs)),
    trainStartedMs: required('trainStep started', trains.map((span) => span.startedMs)),
    trainDoneMs: required('trainStep completed', trains.map((span) => span.closedMs)),
    expandDoneMs: required('activities closed', spans.map((span) => span.closedMs)),
    events: history.events?.length ?? 0,
    bytes: historyBytes(history),
    workflowTaskTimeouts: (history.events ?? []).filter(
      (event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT || event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    ).length,
    activities,
  };
}

function firstWorkflowTaskDoneMs(history: History): number {
  const done = (history.events ?? []).find((event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
  if (done === undefined) throw new Error('iteration history: no completed workflow task');
  return eventMs(done);
}

/** One shard per activity (older histories), or a node's group of shards in one activity. */
const SHARD_ACTIVITIES = new Set(['runRolloutShard', 'runRolloutShards']);
const rankSchema = z.object({ rank: z.number().int().nonnegative() });
const shardGroupSchema = z.object({ shards: z.array(rankSchema).min(1) });

/** The ranks a shard activity runs on: its input's rank, or each member's of a group (JSON payloads). */
export function shardRanks(span: ActivitySpan): number[] {
  const what = `${span.name} scheduled at event ${span.scheduledEventId}`;
  const payload = span.input?.payloads?.[0];
  if (payload === undefined || payload === null) throw new Error(`${what}: no input payload`);
  const input: unknown = defaultPayloadConverter.fromPayload(payload as Payload);
  const parsed = span.name === 'runRolloutShards' ? shardGroupSchema.safeParse(input) : rankSchema.safeParse(input);
  if (!parsed.success) throw new Error(`${what}: unexpected input: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ')}`);
  return 'shards' in parsed.data ? parsed.data.shards.map((shard) => shard.rank) : [parsed.data.rank];
}

/** Per rank, when its first shard started (undefined if none did). */
function firstStartPerRank(spans: readonly ActivitySpan[]): Map<number, number | undefined> {
  const first = new Map<number, number | undefined>();
  for (const span of spans) {
    for (const rank of shardRanks(span)) {
      const starts = [first.get(rank), span.startedMs].filter((ms): ms is number => ms !== undefined);
      first.set(rank, starts.length === 0 ? undefined : Math.min(...starts));
    }
  }
  return first;
}
