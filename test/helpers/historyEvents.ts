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
