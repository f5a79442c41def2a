/** The soak's verdict (`timeshare chaos` exits 1 when it names a failure). */
import { describe, expect, it } from 'vitest';
import { soakFailures, type ChaosReport } from '../../src/chaos/harness';

function report(overrides: Partial<ChaosReport> = {}): ChaosReport {
  return {
    runId: 'chaos-1',
    seed: 1,
    iterationsDone: 2,
    faultsPlanned: 2,
    faultsInjected: 2,
    faultsSurvived: 2,
    faultsNotFired: 0,
    iterationAttemptsFailed: 0,
    invariantViolations: [],
    samplesLost: 0,
    runCompleted: true,
    elapsedMs: 1000,
    faults: [],
    coverage: { covered: 2, total: 2, missing: [] },
    ...overrides,
  };
}

describe('soakFailures', () => {
  it('passes a clean soak, with or without the coverage requirement', () => {
    expect(soakFailures(report(), { requireCoverage: false })).toEqual([]);
    expect(soakFailures(report(), { requireCoverage: true })).toEqual([]);
  });

  it('names violations, lost samples and an unfinished run', () => {
    const failures = soakFailures(report({ invariantViolations: ['a', 'b'], samplesLost: 3, runCompleted: false }), { requireCoverage: false });
    expect(failures).toEqual(['2 invariant violations', '3 samples lost', 'the run did not complete']);
  });

  it('fails on a pair not struck only when coverage is required, naming the pairs', () => {
    const partial = report({ coverage: { covered: 1, total: 2, missing: ['server-kill@expand'] } });
    expect(soakFailures(partial, { requireCoverage: false })).toEqual([]);
    expect(soakFailures(partial, { requireCoverage: true })).toEqual(['coverage 1/2: no fault struck server-kill@expand']);
  });
});
