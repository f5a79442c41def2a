/**
 * A gpu-node worker's rollout figures as Prometheus metrics (README "Metrics"), beside the SDK's
 * own activity metrics: what each rank's engine decoded and how its samples' shards ended. Counted
 * as the work happens, so a dashboard sees rollout throughput per rank between iterations.
 */
import type { MetricMeter } from '@temporalio/common';

export type SampleEndKind = 'completed' | 'dropped' | 'unfinished';

export interface RolloutMetrics {
  /** An engine call returned `tokens` new tokens (an aborted call's prefix included). */
  decoded(tokens: number): void;
  /** A turn ended (the environment answered the generated tokens). */
  turnEnded(): void;
  /** A sample's part in a shard ended: completed, dropped, or unfinished (stopped, checkpointed). */
  sampleEnded(kind: SampleEndKind): void;
}

/** The metrics of one shard's rank, from its activity's meter (which tags the activity type and task queue). */
export function rolloutMetrics(meter: MetricMeter, runId: string, rank: number): RolloutMetrics {
  const tagged = meter.withTags({ run_id: runId, rank });
  const tokens = tagged.createCounter('timeshare_rollout_decoded_tokens', 'tokens', 'Tokens the rank’s engine generated');
  const turns = tagged.createCounter('timeshare_rollout_turns', 'turns', 'Agent turns ended on the rank');
  const ends = tagged.createCounter('timeshare_rollout_sample_ends', 'samples', 'Samples whose run on the rank ended, by how (completed, dropped, unfinished: stopped and checkpointed)');
  return {
    decoded: (count) => {
      if (count > 0) tokens.add(count);
    },
    turnEnded: () => turns.add(1),
    sampleEnded: (kind) => ends.add(1, { outcome: kind }),
  };
}
