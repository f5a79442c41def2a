/** Hand-made workflow histories: a start, activities scheduled/started/closed at given times, a close. */
import { defaultPayloadConverter } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';

const EventType = temporal.api.enums.v1.EventType;
/** An event as HistoryEvent.fromObject takes it (numbers where the proto has Longs). */
type EventObject = Record<string, unknown>;

export interface SyntheticActivity {
  type: string;
  taskQueue: string;
  input: unknown;
  scheduledMs: number;
  /** Absent: never started (then a close is a cancellation). */
  startedMs?: number;
  closedMs?: number;
}

export interface SyntheticHistory {
  /** The workflow's input (JSON, as the default payload converter writes it). */
  input: unknown;
  startedMs: number;
  closedMs: number;
  activities: SyntheticActivity[];
}

const payloads = (value: unknown) => ({ payloads: [defaultPayloadConverter.toPayload(value)] });

/** The history, events in time order (at one time: start, scheduling, starts, closes, close). */
export function syntheticHistory(spec: SyntheticHistory): temporal.api.history.v1.IHistory {
  /** `schedules`: the index of the activity this entry schedules. */
  type Entry = { ms: number; order: number; schedules?: number; make: (scheduledId: (index: number) => number) => EventObject };
  const entries: Entry[] = [
    { ms: spec.startedMs, order: 0, make: () => ({ eventType: EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, workflowExecutionStartedEventAttributes: { input: payloads(spec.input), attempt: 1 } }) },
    { ms: spec.closedMs, order: 5, make: () => ({ eventType: EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, workflowExecutionCompletedEventAttributes: {} }) },
  ];
  spec.activities.forEach((activity, index) => {
    entries.push({
      ms: activity.scheduledMs,
      order: 2,
      schedules: index,
      make: () => ({
        eventType: EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        activityTaskScheduledEventAttributes: { activityType: { name: activity.type }, taskQueue: { name: activity.taskQueue }, input: payloads(activity.input) },
      }),
    });
    if (activity.startedMs !== undefined) {
      entries.push({ ms: activity.startedMs, order: 3, make: (id) => ({ eventType: EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, activityTaskStartedEventAttributes: { scheduledEventId: id(index) } }) });
    }
    // Closed without a start: cancelled while queued (the only way that happens).
    if (activity.closedMs !== undefined && activity.startedMs === undefined) {
      entries.push({ ms: activity.closedMs, order: 4, make: (id) => ({ eventType: EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED, activityTaskCanceledEventAttributes: { scheduledEventId: id(index) } }) });
    } else if (activity.closedMs !== undefined) {
      entries.push({ ms: activity.closedMs, order: 4, make: (id) => ({ eventType: EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, activityTaskCompletedEventAttributes: { scheduledEventId: id(index) } }) });
    }
  });
  entries.sort((a, b) => a.ms - b.ms || a.order - b.order);
  // Event ids follow the order; an activity's events name its scheduling event's id.
  const scheduledIds = new Map<number, number>();
  const events = entries.map((entry, position) => {
    const event = entry.make((index) => {
      const id = scheduledIds.get(index);
      if (id === undefined) throw new Error(`activity ${index}: started or closed before it was scheduled`);
      return id;
    });
    const eventId = position + 1;
    if (entry.schedules !== undefined) scheduledIds.set(entry.schedules, eventId);
    return { ...event, eventId, eventTime: msToTs(entry.ms) };
  });
  // fromObject turns the numbers into the proto's Longs (event ids, scheduled event ids).
  return temporal.api.history.v1.History.create({ events: events.map((event) => temporal.api.history.v1.HistoryEvent.fromObject(event)) });
}
