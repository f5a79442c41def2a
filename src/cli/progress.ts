/** Human-readable run status: one line for live progress, a block for `timeshare status`. */
import type { RunStatus } from '../contract/types';

export function roleSummary(status: RunStatus): string {
  if (status.pool === undefined) return 'GPUs: -';
  const counts = new Map<string, number>();
  for (const role of status.pool.roles) counts.set(role, (counts.get(role) ?? 0) + 1);
  const order = ['rollout', 'offloading', 'training', 'loading', 'idle', 'lost'];
  return `GPUs: ${order
    .filter((role) => counts.has(role))
    .map((role) => `${counts.get(role)} ${role}`)
    .join(' · ')}`;
}

function dropped(status: RunStatus): number {
  return Object.values(status.samples.dropped).reduce((sum, n) => sum + n, 0);
}

/**
 * The iteration a person reads, 1-based: the one running (iteration k of the workflow id
 * `-iter-<k>` is number k + 1), or once the run is done the number of iterations it ran. An
 * iteration reports its own phase `done` as it ends, while it still runs: that is its number too.
 */
export function iterationNumber(status: RunStatus): number {
  const runDone = status.phase === 'done' && status.iterationWorkflowId === undefined;
  return runDone ? status.iteration : Math.min(status.iteration + 1, status.iterationsTotal);
}

/** Sample utilization and the version lag of trained tokens, once a batch reported them. */
function stalenessSummary(status: RunStatus): string {
  const s = status.staleness;
  if (s === undefined) return '';
  return ` | utilization ${(s.utilization * 100).toFixed(1)} % | token lag mean ${s.tokenLag.mean.toFixed(2)} p99 ${s.tokenLag.p99} max ${s.tokenLag.max}`;
}

/** A retried iteration says so: it starts again from the iteration's starting weights. */
function retryNote(status: RunStatus): string {
  const attempt = status.iterationAttempt;
  return attempt !== undefined && attempt > 1 ? ` (attempt ${attempt})` : '';
}

export function progressLine(status: RunStatus, samplesPerSecond: number | undefined): string {
  const state = status.paused ? 'PAUSED' : status.phase;
  const rate = samplesPerSecond === undefined ? '' : ` | ${samplesPerSecond.toFixed(2)} samples/s trained`;
  return (
    `iter ${iterationNumber(status)}/${status.iterationsTotal}${retryNote(status)} | ${state} | weights v${status.version} | ${roleSummary(status)} | ` +
    `samples: ${status.samples.trained} trained, ${status.samples.running} running, ${status.samples.completedWaiting} done-waiting, ` +
    `${status.samples.waiting} carried, ${dropped(status)} dropped${stalenessSummary(status)}${rate}`
  );
}

/** What a watcher says once when a run is seen paused: how it goes on. */
export function pauseHint(status: RunStatus): string | undefined {
  if (!status.paused || status.stopRequested) return undefined;
  // Paused for lost ranks, the run goes on by itself once enough of them are returned.
  if (status.pausedForLostRanks === true) {
    return `  paused: once their node is back, 'timeshare return-ranks ${status.runId} ${formatIdRanges(status.lostRanks ?? [])}' returns the lost ranks, and the run goes on`;
  }
  return `  paused: 'timeshare resume ${status.runId}' goes on${status.lastError === undefined ? '' : ' (once the cause above is dealt with)'}`;
}

export function statusBlock(status: RunStatus): string {
  const lines = [
    `run:        ${status.runId} (${status.strategy})`,
    `iteration:  ${iterationNumber(status)} of ${status.iterationsTotal}${status.phase === 'done' ? ' (done)' : ''}${retryNote(status)}`,
    `phase:      ${status.phase}${status.paused ? ' (paused)' : ''}${status.pauseRequested ? ' (pause requested)' : ''}${status.stopRequested ? ' (stop requested)' : ''}`,
    `weights:    v${status.version}`,
    `batch size: ${status.batchSize}`,
    `${roleSummary(status)}`,
    `samples:    admitted ${status.samples.admitted}, trained ${status.samples.trained}, running ${status.samples.running}, ` +
      `completed-waiting ${status.samples.completedWaiting}, carried ${status.samples.waiting}, dropped ${JSON.stringify(status.samples.dropped)}`,
  ];
  if (status.staleness !== undefined) {
    const s = status.staleness;
    lines.push(
      `staleness:  policy ${s.policy}, utilization ${(s.utilization * 100).toFixed(1)} % (trained ÷ trained + dropped), ` +
        `trained token lag mean ${s.tokenLag.mean.toFixed(2)} / p99 ${s.tokenLag.p99} / max ${s.tokenLag.max} versions (${s.tokenLag.tokens} tokens)`,
    );
  }
  if (status.kvCapacity !== undefined) lines.push(`KV cap:     ${kvCapacitySummary(status.kvCapacity)}`);
  if (status.pool !== undefined) lines.push(`roles:      ${status.pool.roles.map((role, gpu) => `${gpu}:${role}`).join(' ')}`);
  if (status.shrinkOverride !== undefined) lines.push(`shrink set: ranks ${status.shrinkOverride.join(',')} (override)`);
  if (status.lastIteration !== undefined) {
    const last = status.lastIteration;
    lines.push(
      `last iter:  #${last.iteration + 1} v${last.fromVersion}→v${last.toVersion}, ${last.batchSamples} samples / ${last.batchTokens} tokens, ` +
        `${((last.endedAtMs - last.startedAtMs) / 1000).toFixed(1)} s, migrated ${last.migrated}`,
    );
  }
  if (status.lostRanks !== undefined) lines.push(`lost ranks: ${status.lostRanks.join(',')} (return them with 'timeshare return-ranks ${status.runId} <ranks>')`);
  if (status.lastError !== undefined) lines.push(`last error: ${status.lastError}`);
  if (status.progressUnavailable !== undefined) lines.push(`progress:   unavailable (phase, roles and live counts as the iteration started): ${status.progressUnavailable}`);
  return lines.join('\n');
}

/** What the admission's KV cap counts on: the engines' reports per rank, and the config's bound. */
export function kvCapacitySummary(kv: NonNullable<RunStatus['kvCapacity']>): string {
  const reports = kv.reported.map(({ rank, tokens }) => `${rank}:${tokens ?? 'none'}`).join(' ');
  const configured = kv.configuredPerRank === null ? '' : `${reports === '' ? '' : '; '}at most ${kv.configuredPerRank} per rank (rollout.kvCapacityTokensPerRank)`;
  const silent = kv.configuredPerRank === null && kv.reported.some(({ tokens }) => tokens === null) ? ' — no KV cap while ranks reporting none roll out' : '';
  return `${reports === '' ? '' : `engines report ${reports} tokens`}${configured}${silent}`;
}

/** Ids as ranges, the form configs take (`0-3,8,10-11`): 128 GPUs read as `0-127`, not 128 numbers. */
export function formatIdRanges(ids: readonly number[]): string {
  const sorted = [...ids].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(j === i ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
