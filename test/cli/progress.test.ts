/** The progress line and status block show the staleness figures once a batch reported them. */
import { describe, expect, it } from 'vitest';
import { progressLine, statusBlock } from '../../src/cli/progress';
import type { RunStatus } from '../../src/pipeline/types';

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
