/**
 * Errors of the OpenEnv environment adapter. Each names the server (and session) it came from.
 *
 * - EnvironmentProtocolError: the server answered something its protocol does not allow
 *   (malformed JSON, a wrong schema, an error message for a well-formed request, a reset that
 *   does not reproduce the recorded prompt). Retrying cannot help: non-retryable
 *   (src/contract/errors.ts). The sample stays checkpointed in the store; nothing is lost.
 * - EnvironmentUnavailableError: no answer (connection refused, HTTP 5xx, a closed WebSocket, a
 *   call past its timeout, the server at its session limit). The episode's session is gone; the
 *   crash rule decides what happens to the episode (src/engines/openenv/environment.ts).
 * - EpisodeLostError: the episode cannot go on (lost and not replayable, or the replay did not
 *   reproduce it). The rollout loop ends the sample with `reason`, which the store counts.
 */
export class EnvironmentProtocolError extends Error {
  constructor(
    readonly where: string,
    detail: string,
    /** The server's error code when it answered an error message (OpenEnv's WSErrorCode). */
    readonly code?: string,
  ) {
    super(`${where}: ${detail}`);
    this.name = 'EnvironmentProtocolError';
  }
}

export class EnvironmentUnavailableError extends Error {
  constructor(
    readonly where: string,
    detail: string,
  ) {
    super(`${where}: ${detail}`);
    this.name = 'EnvironmentUnavailableError';
  }
}

/**
 * The server refused a new session because it holds as many as it serves (OpenEnv's
 * CAPACITY_REACHED, with its `max_sessions` when it says). Backpressure, not a lost session: the
 * episode waits for a session instead of spending a retry.
 */
export class ServerAtCapacityError extends EnvironmentUnavailableError {
  constructor(
    where: string,
    detail: string,
    /** The server's session limit, as it reported it. */
    readonly maxSessions: number | undefined,
  ) {
    super(where, detail);
    this.name = 'ServerAtCapacityError';
  }
}

/** Drop reasons a lost episode ends its sample with (counted by the store's drop report). */
export const EPISODE_LOST_REASONS = ['environment-lost', 'environment-unavailable', 'environment-diverged'] as const;
export type EpisodeLostReason = (typeof EPISODE_LOST_REASONS)[number];

export class EpisodeLostError extends Error {
  constructor(
    readonly sampleId: number,
    readonly reason: EpisodeLostReason,
    detail: string,
  ) {
    super(`sample ${sampleId}: episode ${reason}: ${detail}`);
    this.name = 'EpisodeLostError';
  }
}
