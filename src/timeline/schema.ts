/**
 * Validation of timelines at the boundary (a timelines.json file, the simulator's output, a
 * history extraction): zod for the shape, then the cross-field rules through the named patterns
 * of src/validation/patterns.ts (lanes known and unique, start <= end, segments within [0, endMs]).
 * Pure: no I/O.
 */
import { z } from 'zod';
import { checkNoDuplicates, checkNonEmpty, checkPostcondition, checkSubset } from '../validation/patterns';
import { TIMELINE_ROLES, type Timeline, type TimelineRole } from './types';

const ms = z.number().finite().nonnegative();

export const timelineSegmentSchema = z.strictObject({
  lane: z.string().min(1),
  role: z.enum(TIMELINE_ROLES as [TimelineRole, ...TimelineRole[]]),
  startMs: ms,
  endMs: ms,
  label: z.string().optional(),
});

export const timelineSchema = z.strictObject({
  title: z.string().min(1),
  source: z.enum(['simulator', 'temporal-history']),
  strategy: z.string().min(1),
  lanes: z.array(z.string().min(1)),
  segments: z.array(timelineSegmentSchema),
  endMs: ms,
  marks: z.array(z.strictObject({ atMs: ms, label: z.string() })).optional(),
  note: z.string().optional(),
});

/** A timelines document (what the simulator's bench writes and `timeshare timeline --from-json` reads): at least one. */
export const timelinesSchema = z.array(timelineSchema).min(1, 'expected at least one timeline');

/** A timelines document that failed the schema; the message lists every issue with its path. */
export class TimelineFormatError extends Error {
  constructor(source: string, issues: z.ZodError['issues']) {
    const lines = issues.slice(0, 20).map((issue) => `  - ${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`);
    if (issues.length > 20) lines.push(`  - ... and ${issues.length - 20} more`);
    super([`Invalid timelines ${source}:`, ...lines].join('\n'));
    this.name = 'TimelineFormatError';
  }
}

/** Cross-field rules of one timeline; throws a ValidationError naming the timeline and segment. */
export function checkTimeline(timeline: Timeline, where = `timeline '${timeline.title}'`): void {
  checkNonEmpty(`${where}: lanes`, timeline.lanes);
  checkNoDuplicates(`${where}: lanes`, timeline.lanes);
  checkSubset(
    `${where}: segment lanes`,
    timeline.segments.map((segment) => segment.lane),
    timeline.lanes,
    { universeName: 'the timeline lanes' },
  );
  timeline.segments.forEach((segment, index) => {
    const subject = `${where}: segment ${index} (${segment.role} on '${segment.lane}')`;
    checkPostcondition(`${subject} starts no later than it ends`, segment.startMs <= segment.endMs, () =>
      JSON.stringify({ startMs: segment.startMs, endMs: segment.endMs }),
    );
    checkPostcondition(`${subject} lies within [0, endMs]`, segment.startMs >= 0 && segment.endMs <= timeline.endMs, () =>
      JSON.stringify({ startMs: segment.startMs, endMs: segment.endMs, timelineEndMs: timeline.endMs }),
    );
  });
  (timeline.marks ?? []).forEach((mark, index) => {
    checkPostcondition(`${where}: mark ${index} ('${mark.label}') lies within [0, endMs]`, mark.atMs <= timeline.endMs, () =>
      JSON.stringify({ atMs: mark.atMs, timelineEndMs: timeline.endMs }),
    );
  });
}

/** Parses and checks timelines from untrusted input (e.g. a timelines.json file named `source`). */
export function parseTimelines(value: unknown, source: string): Timeline[] {
  const parsed = timelinesSchema.safeParse(value);
  if (!parsed.success) throw new TimelineFormatError(source, parsed.error.issues);
  parsed.data.forEach((timeline, index) => checkTimeline(timeline, `${source}[${index}] '${timeline.title}'`));
  return parsed.data;
}

/** Checks timelines built in-process (typed already): the same cross-field rules, plus the shape. */
export function checkTimelines(timelines: readonly Timeline[], source = 'timelines'): Timeline[] {
  return parseTimelines(timelines, source);
}
