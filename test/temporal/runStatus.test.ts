import { describe, expect, it } from 'vitest';
import type { IterationProgress, RunStatus } from '../../src/contract/types';
import { parseIterationProgress, withIterationProgress } from '../../src/temporal/runStatus';

const runStatus: RunStatus = {
  runId: 'r',
  strategy: 'multiplexed',
  iteration: 2,
  iterationsTotal: 5,
  phase: 'starting',
  version: 2,
  paused: false,
  pauseRequested: false,
  stopRequested: false,
  pool: undefined,
  samples: { admitted: 40, trained: 16, dropped: {}, running: 0, completedWaiting: 3, waiting: 5 },
  batchSize: 8,
  shrinkOverride: undefined,
  lastIteration: undefined,
  lastError: undefined,
  iterationWorkflowId: 'timeshare-r-iter-2',
};

const progress = (phase: IterationProgress['phase'], iteration = 2): IterationProgress => ({
  iteration,
  phase,
  pool: { roles: ['training', 'training', 'rollout', 'rollout'], rankPhases: ['released', 'released', 'serving', 'serving'] },
  version: phase === 'train' ? 2 : 3,
  samplesRunning: 6,
  samplesCompleted: 1,
  samplesWaiting: 0,
  batchSamples: 8,
});

describe('run status with the running iteration progress', () => {
  it('takes phase, version, pool and live counts from the iteration; counts its batch trained once the step is done', () => {
    const training = withIterationProgress(runStatus, progress('train'));
    expect(training).toMatchObject({ phase: 'train', version: 2, pool: progress('train').pool });
    expect(training.samples).toEqual({ admitted: 40, trained: 16, dropped: {}, running: 6, completedWaiting: 1, waiting: 0 });
    for (const phase of ['stop', 'sync', 'expand', 'done'] as const) {
      expect(withIterationProgress(runStatus, progress(phase)).samples.trained, phase).toBe(24);
    }
  });

  it("leaves the run's status as it is before the first report or for another iteration's report", () => {
    expect(withIterationProgress(runStatus, null)).toEqual(runStatus);
    expect(withIterationProgress(runStatus, progress('train', 1))).toEqual(runStatus);
  });

  it('rejects a malformed answer with the workflow named', () => {
    expect(parseIterationProgress('w', null)).toBeNull();
    expect(parseIterationProgress('w', progress('sync'))).toEqual(progress('sync'));
    expect(() => parseIterationProgress('timeshare-r-iter-2', { ...progress('sync'), phase: 'lunch' })).toThrow(/progress query of timeshare-r-iter-2: malformed answer: phase/);
    expect(() => parseIterationProgress('w', { ...progress('sync'), extra: 1 })).toThrow(/malformed answer/);
  });
});
