/** The soak's verdict (`timeshare chaos` exits 1 when it names a failure), and the phase it counts a fault in. */
import { describe, expect, it } from 'vitest';
import { phaseAt, soakFailures, type ChaosReport } from '../../src/chaos/harness';

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

describe('the phase an engine fault on generate struck in (from the iteration phase times)', () => {
  // Started at 1000: starting 10 ms, rollout 100, shrink 40, train 60, stop 20, sync 30, expand 10.
  const stats = { startedAtMs: 1000, endedAtMs: 1270, phaseMs: { starting: 10, rollout: 100, shrink: 40, train: 60, stop: 20, sync: 30, expand: 10 } };

  it('places a time in the phase whose window holds it', () => {
    expect(phaseAt(stats, 1005)).toBe('starting');
    expect(phaseAt(stats, 1010)).toBe('rollout');
    expect(phaseAt(stats, 1109)).toBe('rollout');
    expect(phaseAt(stats, 1110)).toBe('shrink');
    expect(phaseAt(stats, 1200)).toBe('train');
    expect(phaseAt(stats, 1265)).toBe('expand');
  });

  it('an iteration without a rollout phase (its batch complete at the start) places nothing in rollout', () => {
    const noRollout = { startedAtMs: 1000, endedAtMs: 1170, phaseMs: { starting: 10, shrink: 40, train: 60, stop: 20, sync: 30, expand: 10 } };
    expect(phaseAt(noRollout, 1012)).toBe('shrink');
    expect(phaseAt(noRollout, 1060)).toBe('train');
  });

  it('a time outside the iteration (an earlier, failed attempt) is in no phase', () => {
    expect(phaseAt(stats, 999)).toBeUndefined();
    expect(phaseAt(stats, 1271)).toBeUndefined();
  });
});
