/**
 * The run's figures as Prometheus metrics of the orchestrator worker (README "Metrics"), recorded
 * as each iteration completes. The SDK drops what a workflow records while its history replays,
 * so a worker that replays a run does not count its iterations again; a workflow task that fails
 * after recording and runs again would (rare: the metrics are for dashboards, the run's ledger is
 * the account).
 */
import { metricMeter } from '@temporalio/workflow';
import type { IterationStats, Phase, RunSpec } from '../contract/types';

/** Records a completed iteration: its durations, its samples, the weights it made. */
export function recordIteration(spec: RunSpec, stats: IterationStats): void {
  const meter = metricMeter.withTags({ run_id: spec.runId, strategy: spec.layout.strategy });
  meter.createCounter('timeshare_iterations_completed', 'iterations', 'Iterations completed (trained and synced)').add(1);
  meter.createHistogram('timeshare_iteration_duration_seconds', 'float', 's', 'Wall-clock time of an iteration, its start to its weights synced').record(seconds(stats.endedAtMs - stats.startedAtMs));
  const phases = meter.createHistogram('timeshare_phase_duration_seconds', 'float', 's', "Wall-clock time of an iteration's phases (shrink: batch ready to training; stop, sync, expand: training done to rolling out)");
  for (const [phase, ms] of Object.entries(stats.phaseMs) as [Phase, number | undefined][]) {
    if (ms !== undefined) phases.record(seconds(ms), { phase });
  }
  meter.createCounter('timeshare_samples_admitted', 'samples', 'Samples admitted to rollout').add(stats.admitted);
  meter.createCounter('timeshare_samples_trained', 'samples', 'Samples trained on (the batches)').add(stats.batchSamples);
  meter.createCounter('timeshare_tokens_trained', 'tokens', "Tokens of the trained batches' trajectories").add(stats.batchTokens);
  meter.createCounter('timeshare_samples_migrated', 'samples', 'Unfinished samples moved off released ranks at a shrink').add(stats.migrated);
  const dropped = meter.createCounter('timeshare_samples_dropped', 'samples', 'Samples dropped, by reason (stale, environment-timeout, ...)');
  for (const [reason, count] of Object.entries(stats.dropped)) if (count > 0) dropped.add(count, { reason });
  const lagged = meter.createCounter('timeshare_trained_generated_tokens', 'tokens', 'Generated tokens trained on, by their version lag behind the weights trained from');
  for (const [lag, tokens] of Object.entries(stats.tokenLags ?? {})) if (tokens > 0) lagged.add(tokens, { lag });
  meter.createGauge('timeshare_weight_version', 'int', '', 'The weight version the rollout engines serve').set(stats.toVersion);
  meter.createGauge('timeshare_samples_carried_over', 'int', 'samples', 'Live samples carried into the next iteration').set(stats.carriedOver);
}

/** The ranks out of the pool now (recorded wherever the run's standing is said: a loss, a pause, a return). */
export function recordLostRanks(spec: RunSpec, lostRanks: number): void {
  const meter = metricMeter.withTags({ run_id: spec.runId, strategy: spec.layout.strategy });
  meter.createGauge('timeshare_ranks_lost', 'int', 'ranks', 'Ranks whose node is lost, out of the pool until returned').set(lostRanks);
}

const seconds = (ms: number): number => Math.max(0, ms) / 1000;
