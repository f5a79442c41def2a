/**
 * The Temporal runtime of our processes (worker processes, tests, scripts): its logger, and where
 * asked its Prometheus endpoint, which serves the SDK's own metrics (workflow tasks, activities,
 * polls) beside timeshare's (src/workflows/runMetrics.ts, src/activities/rolloutMetrics.ts).
 * Installed once per process, before the first connection or worker.
 */
import { Runtime, type LogLevel } from '@temporalio/worker';
import { TimeshareLogger } from './logging';

export interface WorkerRuntimeOptions {
  logLevel?: LogLevel;
  /** host:port to serve Prometheus metrics on (`GET /metrics`); absent: no metrics endpoint. */
  metricsAddress?: string;
}

/** Histogram buckets of timeshare's own durations, in seconds: control-plane steps to whole iterations. */
export const DURATION_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/** timeshare's histograms that record durations (their buckets are DURATION_BUCKETS_SECONDS). */
export const DURATION_HISTOGRAMS = ['timeshare_iteration_duration_seconds', 'timeshare_phase_duration_seconds'] as const;

let installed: WorkerRuntimeOptions | undefined;

/**
 * Installs the runtime. A later call changes nothing (the runtime cannot change): its log level
 * is the first's (tests install at WARN before the pipeline asks for it again), and one that asks
 * for a metrics endpoint the first did not set up throws.
 */
export function installWorkerRuntime(options: WorkerRuntimeOptions = {}): void {
  if (installed !== undefined) {
    if (options.metricsAddress !== undefined && options.metricsAddress !== installed.metricsAddress) {
      throw new Error(`the Temporal runtime of this process is already installed ${installed.metricsAddress === undefined ? 'without metrics' : `with metrics on ${installed.metricsAddress}`}: cannot serve metrics on ${options.metricsAddress}`);
    }
    return;
  }
  const logger = new TimeshareLogger(options.logLevel ?? 'INFO');
  if (options.metricsAddress === undefined) {
    Runtime.install({ logger });
  } else {
    const buckets = Object.fromEntries(DURATION_HISTOGRAMS.map((name) => [name, DURATION_BUCKETS_SECONDS]));
    Runtime.install({
      logger,
      telemetryOptions: {
        metrics: {
          prometheus: { bindAddress: options.metricsAddress, countersTotalSuffix: true, useSecondsForDurations: true, histogramBucketOverrides: buckets },
        },
      },
    });
  }
  installed = { ...options };
}
