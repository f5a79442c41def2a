/**
 * What every worker process needs: the validated config, the run id, where files live, and how
 * to reach Temporal. Built by the CLI from flags and the config file.
 */
import type { ParsedRunConfig } from '../config';
import type { ConnectionSecurity } from '../temporal/security';
import type { RuntimePaths } from './runtime';

export interface TemporalTarget {
  address: string;
  namespace: string;
  /** TLS, API key and payload codec (src/temporal/security.ts); absent: plaintext, no codec. */
  security?: ConnectionSecurity;
}

export interface WorkerContext {
  parsed: ParsedRunConfig;
  runId: string;
  paths: RuntimePaths;
  temporal: TemporalTarget;
}

/**
 * Heartbeat cadence of long activities. Cancellation reaches an activity with a heartbeat
 * response, so this bounds how long a shrink waits for the released shards to hear it.
 */
export const HEARTBEAT_INTERVAL_MS = 200;
/** The SDK's throttle on sending heartbeats: kept as short as the cadence for the same reason. */
export const HEARTBEAT_THROTTLE = '200 milliseconds';
/** Running activities (shards) are cancelled this long after shutdown starts, so they checkpoint. */
export const SHUTDOWN_GRACE = '2 seconds';
/**
 * A worker that is shutting down stops this long after shutdown starts even if an activity ignores
 * its cancellation (an engine call that hangs): a worker whose parent died must not outlive it.
 */
export const SHUTDOWN_FORCE = '15 seconds';
/**
 * Activity pollers per rank (and trainer) queue. Each queue sees a few activities per iteration,
 * and the server caps concurrent polls per namespace: with the SDK default (up to 10 per worker)
 * 128 ranks already exceeded the dev server's cap ("namespace concurrent poller limit exceeded")
 * and shards never started (measured by the control-plane benchmark).
 */
export const RANK_QUEUE_POLLERS = 2;
