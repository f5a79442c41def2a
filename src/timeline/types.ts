/**
 * A per-lane (GPU or rank) timeline of roles over time: what the seed's figure comparing the
 * three strategies shows. Produced by the discrete-event simulator (virtual time) and extracted
 * from a real run's Temporal history; rendered to SVG/PNG by src/timeline/render.ts.
 * Pure types: safe to import anywhere.
 */

/** What a lane is doing during a segment. 'idle' is drawn explicitly so bubbles are visible. */
export type TimelineRole = 'rollout' | 'train' | 'offload' | 'onload' | 'sync' | 'idle';

export const TIMELINE_ROLES: readonly TimelineRole[] = ['rollout', 'train', 'offload', 'onload', 'sync', 'idle'];

export interface TimelineSegment {
  /** The lane's label, one of Timeline.lanes (e.g. "GPU 3" or "rank 1"). */
  lane: string;
  role: TimelineRole;
  /** Milliseconds from the timeline's start (virtual time for the simulator, wall time for a run). */
  startMs: number;
  endMs: number;
  /** Optional detail shown in tooltips / legends, e.g. "iter 2". */
  label?: string;
}

/** A labelled instant drawn across every lane, e.g. the start of an iteration. */
export interface TimelineMark {
  atMs: number;
  label: string;
}

export interface Timeline {
  /** Panel title, e.g. "multiplexed (160 GPUs)". */
  title: string;
  source: 'simulator' | 'temporal-history';
  strategy: string;
  /** Lanes top to bottom. Every segment's lane is one of these. */
  lanes: string[];
  segments: TimelineSegment[];
  /** End of the observed span (ms); segments lie within [0, endMs]. */
  endMs: number;
  /** Optional instants to mark (within [0, endMs]), e.g. iteration starts. */
  marks?: TimelineMark[];
  /** Optional note under the panel title, e.g. how lanes map to GPUs. */
  note?: string;
}
