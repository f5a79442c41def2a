/** What a workflow history recorded, read back for assertions. */
import type { temporal } from '@temporalio/proto';

/** The activity type of each local activity the history recorded (its `core_local_activity` markers), in order. */
export function localActivityTypes(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? []).flatMap((event) => {
    const marker = event.markerRecordedEventAttributes;
    if (marker?.markerName !== 'core_local_activity') return [];
    const data = marker.details?.['data']?.payloads?.[0]?.data;
    if (data === undefined || data === null) throw new Error(`local activity marker (event ${String(event.eventId)}) without data`);
    const parsed = JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: unknown };
    if (typeof parsed.activity_type !== 'string') throw new Error(`local activity marker (event ${String(event.eventId)}) without an activity type`);
    return [parsed.activity_type];
  });
}

/** The store recovery's two reads, as an iteration issues them in its first workflow task. */
export const STORE_RECOVERY = ['describeSamples', 'readSealedBatch'];

/** The activity type of each (non-local) activity the history scheduled, in order. */
export function scheduledActivityTypes(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? []).flatMap((event) => {
    const name = event.activityTaskScheduledEventAttributes?.activityType?.name;
    return name === undefined || name === null ? [] : [name];
  });
}

/**
 * Whether every `first` activity the history scheduled completed before the first `then` activity
 * was scheduled (false if either never appears).
 */
export function completedBeforeScheduled(history: temporal.api.history.v1.IHistory, first: string, then: string): boolean {
  const types = new Map<string, string>();
  let firstScheduled = 0;
  let firstCompleted = 0;
  for (const event of history.events ?? []) {
    const scheduled = event.activityTaskScheduledEventAttributes;
    if (scheduled) {
      const type = scheduled.activityType?.name ?? '';
      types.set(String(event.eventId), type);
      if (type === then) return firstScheduled > 0 && firstCompleted === firstScheduled;
      if (type === first) firstScheduled += 1;
    }
    const completed = event.activityTaskCompletedEventAttributes;
    if (completed && types.get(String(completed.scheduledEventId)) === first) firstCompleted += 1;
  }
  return false;
}
