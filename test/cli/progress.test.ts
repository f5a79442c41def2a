/** The progress line and status block show the staleness figures once a batch reported them. */
import { describe, expect, it } from 'vitest';
import { formatIdRanges, iterationNumber, pauseHint, progressLine, statusBlock } from '../../src/cli/progress';
import { parseGpuRanges } from '../../src/config/schema';
import type { RunStatus } from '../../src/contract/types';

const status: RunStatus = {
  runId: 'r',
  strategy: 'multiplexed',
  iteration: 2,
  iterationsTotal: 5,
  phase: 'rollout',
  version: 2,
  paused: false,
  pauseRequested: false,
  stopRequested: false,
  pool: undefined,
  samples: { admitted: 40, trained: 32, dropped: { stale: 0 }, running: 8, completedWaiting: 0, waiting: 0 },
  batchSize: 16,
  shrinkOverride: undefined,
  lastIteration: undefined,
  lastError: undefined,
};

describe('staleness in progress and status', () => {
  it('absent before any batch reported token versions', () => {
    expect(progressLine(status, undefined)).not.toContain('token lag');
    expect(statusBlock(status)).not.toContain('staleness:');
  });

  it('utilization and the lag of trained tokens', () => {
    const withFigures: RunStatus = { ...status, staleness: { policy: 'resume', utilization: 1, tokenLag: { tokens: 900, mean: 0.5, p99: 2, max: 3 } } };
    expect(progressLine(withFigures, undefined)).toContain('utilization 100.0 % | token lag mean 0.50 p99 2 max 3');
    expect(statusBlock(withFigures)).toContain('staleness:  policy resume, utilization 100.0 %');
    expect(statusBlock(withFigures)).toContain('mean 0.50 / p99 2 / max 3 versions (900 tokens)');
  });
});

describe('the KV cap in status', () => {
  it('absent while no engine reported and the config sets none', () => {
    expect(statusBlock(status)).not.toContain('KV cap:');
  });

  it("the engines' reports per rank, the config's bound, and that a rank reporting none leaves no cap", () => {
    const reported = [
      { rank: 0, tokens: 4096 },
      { rank: 1, tokens: null },
    ];
    expect(statusBlock({ ...status, kvCapacity: { reported, configuredPerRank: null } })).toContain('KV cap:     engines report 0:4096 1:none tokens — no KV cap while ranks reporting none roll out');
    expect(statusBlock({ ...status, kvCapacity: { reported, configuredPerRank: 2048 } })).toContain('KV cap:     engines report 0:4096 1:none tokens; at most 2048 per rank (rollout.kvCapacityTokensPerRank)');
    expect(statusBlock({ ...status, kvCapacity: { reported: [], configuredPerRank: 2048 } })).toContain('KV cap:     at most 2048 per rank (rollout.kvCapacityTokensPerRank)');
  });
});

describe('formatIdRanges', () => {
  it('writes ids as the ranges a config takes, and parseGpuRanges reads them back', () => {
    expect(formatIdRanges([])).toBe('');
    expect(formatIdRanges([3])).toBe('3');
    expect(formatIdRanges([0, 1, 2, 3, 8, 10, 11])).toBe('0-3,8,10-11');
    expect(formatIdRanges([11, 10, 0, 2, 1])).toBe('0-2,10-11');
    const ids = Array.from({ length: 128 }, (_, i) => i);
    expect(formatIdRanges(ids)).toBe('0-127');
    for (const sample of [[0, 1, 2, 3, 8, 10, 11], ids, [5, 7, 9], [4, 5]]) {
      const parsed = parseGpuRanges(formatIdRanges(sample));
      expect(parsed).toEqual({ ok: true, ids: [...sample].sort((a, b) => a - b) });
    }
  });
});

describe('the iteration number a person reads', () => {
  it('the running iteration 1-based, also in its own last phase; the count ran once the run is done', () => {
    const running = { ...status, iteration: 2, iterationsTotal: 3, iterationWorkflowId: 'timeshare-r-iter-2' };
    expect(iterationNumber({ ...running, phase: 'sync' })).toBe(3);
    expect(iterationNumber({ ...running, phase: 'done' })).toBe(3);
    expect(progressLine({ ...running, phase: 'done' }, undefined)).toMatch(/^iter 3\/3 \| done/);
    expect(iterationNumber({ ...status, iteration: 3, iterationsTotal: 3, phase: 'done' })).toBe(3);
    // A run stopped early: done after 2 of 5.
    expect(iterationNumber({ ...status, iteration: 2, iterationsTotal: 5, phase: 'done', stopRequested: true })).toBe(2);
  });
});

describe('what a watcher says of a paused run', () => {
  it('names the command that goes on, and that a failure must be dealt with first', () => {
    expect(pauseHint(status)).toBeUndefined();
    expect(pauseHint({ ...status, paused: true })).toBe("  paused: 'timeshare resume r' goes on");
    expect(pauseHint({ ...status, paused: true, lastError: 'iteration 3 failed' })).toBe("  paused: 'timeshare resume r' goes on (once the cause above is dealt with)");
    // Paused for lost ranks: returning them is what lets it go on.
    expect(pauseHint({ ...status, paused: true, lostRanks: [4, 5, 6], pausedForLostRanks: true, lastError: 'paused: ranks 4,5,6 are lost' })).toBe(
      "  paused: once their node is back, 'timeshare return-ranks r 4-6' returns the lost ranks, and the run goes on",
    );
    // Paused by the operator while some ranks are lost: resume goes on.
    expect(pauseHint({ ...status, paused: true, lostRanks: [4] })).toBe("  paused: 'timeshare resume r' goes on");
    // A paused run being stopped goes nowhere else.
    expect(pauseHint({ ...status, paused: true, stopRequested: true })).toBeUndefined();
  });
});
