/**
 * The harness's invariant checks hold on a consistent state and FAIL on each kind of broken
 * state: a lost sample, a sample in two batches (store audit), a drop without a reason, a rank
 * on old weights, a rank not serving, a shared trainer still holding its GPUs, an OOM, a version
 * going back, an invalid pool state.
 */
import { describe, expect, it } from 'vitest';
import { checkIteration, checkObservedStatus, observeVersions, type IterationSnapshot } from '../../src/chaos/invariants';
import { buildLayout, initialPoolState } from '../../src/gpu';
import { beginOffload } from '../../src/gpu/roles';

function healthy(): IterationSnapshot {
  return {
    iteration: 1,
    status: {
      iteration: 2,
      version: 2,
      samples: { admitted: 30, trained: 16, dropped: { stale: 2 }, running: 0, completedWaiting: 4, waiting: 8 },
    },
    audit: { samples: 30, completed: 20, running: 8, dropped: { stale: 2 }, batched: 16, batches: 2, violations: [] },
    ranks: [0, 1, 2, 3].map((rank) => ({ rank, weightVersion: 2, resident: ['weights', 'kv_cache'] })),
    trainers: [{ node: 0, weightVersion: 2, onloaded: false }],
    trainerShared: true,
    outOfMemory: [],
  };
}

describe('per-iteration invariants', () => {
  it('hold on a consistent state', () => {
    expect(checkIteration(healthy())).toEqual({ violations: [], samplesLost: 0 });
  });

  const broken: { name: string; change: (s: IterationSnapshot) => void; message: RegExp; lost?: number }[] = [
    {
      name: 'a sample vanished from the ledger',
      change: (s) => {
        s.status.samples.waiting = 7;
        s.audit.running = 7;
      },
      message: /30 admitted but 29/,
      lost: 1,
    },
    { name: 'a sample file is missing from the store', change: (s) => void (s.audit.samples = 29), message: /store holds 29 samples/, lost: 1 },
    { name: 'the store audit found a sample in two batches', change: (s) => void s.audit.violations.push('sample 3: in 2 batches (0, 1)'), message: /in 2 batches/ },
    {
      name: 'a drop without a reason',
      change: (s) => {
        s.status.samples.dropped = { stale: 1, unknown: 1 };
        s.audit.dropped = { stale: 1, unknown: 1 };
      },
      message: /without a stated reason/,
    },
    { name: 'drop counts disagree', change: (s) => void (s.audit.dropped = { stale: 1, 'environment-timeout': 1 }), message: /dropped 'stale'/ },
    { name: 'a batch too many', change: (s) => void (s.audit.batches = 3), message: /3 batches after iteration 1/ },
    { name: 'a rank on old weights', change: (s) => void (s.ranks[2]!.weightVersion = 1), message: /rank 2 serves weights v1, expected v2/ },
    { name: 'the trainer on another version', change: (s) => void (s.trainers[0]!.weightVersion = 3), message: /trainer node 0 at v3/ },
    { name: 'the run on the wrong version', change: (s) => void (s.status.version = 1), message: /run at weights v1/ },
    { name: 'a rank not serving', change: (s) => void (s.ranks[0]!.resident = ['weights']), message: /rank 0 is not serving.*kv_cache/ },
    { name: 'a shared trainer still onloaded', change: (s) => void (s.trainers[0]!.onloaded = true), message: /still holds its GPUs/ },
    { name: 'a simulated OOM', change: (s) => void s.outOfMemory.push('iter-1: gpu 0 out of memory'), message: /simulated out-of-memory/ },
    { name: 'trained count disagrees with the store', change: (s) => void (s.audit.batched = 15), message: /15 batched samples/ },
  ];
  for (const { name, change, message, lost } of broken) {
    it(`fail when ${name}`, () => {
      const snapshot = healthy();
      change(snapshot);
      const verdict = checkIteration(snapshot);
      expect(verdict.violations.join('\n')).toMatch(message);
      if (lost !== undefined) expect(verdict.samplesLost).toBe(lost);
    });
  }

  it('a disaggregated trainer may stay onloaded', () => {
    const snapshot = healthy();
    snapshot.trainerShared = false;
    snapshot.trainers[0]!.onloaded = true;
    expect(checkIteration(snapshot).violations).toEqual([]);
  });
});

describe('observed status', () => {
  const layout = buildLayout({ strategy: 'multiplexed', nodes: 1, gpusPerNode: 4, rolloutGpus: [0, 1, 2, 3], gpusPerRank: 1, trainGpus: [0, 1], asyncRatio: 1 });

  it('accepts a valid pool and a version that moves forward', () => {
    const pool = beginOffload(layout, initialPoolState(layout), [0, 1]);
    expect(checkObservedStatus(layout, { highest: 1, committed: 1 }, { version: 2, iteration: 1, phase: 'shrink', pool })).toEqual([]);
  });

  it('fails when the version goes back', () => {
    expect(checkObservedStatus(layout, { highest: 3, committed: 2 }, { version: 2, iteration: 2, phase: 'rollout', iterationAttempt: 1 })[0]).toMatch(/went back from v3 to v2/);
  });

  it("holds a status without the iteration's progress to the committed versions: it reports the run's own", () => {
    // Iteration 0 after its train step reports v1; the run's own status says v0 until the iteration ends.
    let observed = observeVersions({ highest: 0, committed: 0 }, { version: 0, iteration: 0, phase: 'starting' });
    observed = observeVersions(observed, { version: 1, iteration: 0, phase: 'sync', iterationAttempt: 1 });
    const ownOnly = { version: 0, iteration: 0, phase: 'starting' as const, progressUnavailable: 'progress query of iteration 0 failed: deadline exceeded' };
    expect(checkObservedStatus(layout, observed, ownOnly)).toEqual([]);
    observed = observeVersions(observed, ownOnly);
    expect(observed).toMatchObject({ highest: 1, committed: 0 });
    // The run's own version going back is still caught, as is a merged status going back.
    const committedOne = observeVersions(observed, { ...ownOnly, version: 1, iteration: 1 });
    expect(checkObservedStatus(layout, committedOne, { ...ownOnly, iteration: 1 })[0]).toMatch(/went back from v1 to v0 .*the run's own status/);
    expect(checkObservedStatus(layout, observed, { version: 0, iteration: 0, phase: 'sync', iterationAttempt: 1 })[0]).toMatch(/went back from v1 to v0/);
  });

  it("holds a retried attempt seen before its first phase report to the committed versions: the status is the run's own", () => {
    // Iteration 13 from v13: attempt 1 trains (v14) and fails in its stop; before attempt 2 reports,
    // the status is the run's (phase starting, v13, no attempt).
    let observed = observeVersions({ highest: 13, committed: 13 }, { version: 13, iteration: 13, phase: 'rollout', iterationAttempt: 1 });
    observed = observeVersions(observed, { version: 14, iteration: 13, phase: 'stop', iterationAttempt: 1 });
    const beforeRetryReports = { version: 13, iteration: 13, phase: 'starting' as const };
    expect(checkObservedStatus(layout, observed, beforeRetryReports)).toEqual([]);
    expect(observeVersions(observed, beforeRetryReports)).toMatchObject({ highest: 14, committed: 13 });
    // Below the committed version it is still caught, named as the run's own status.
    expect(checkObservedStatus(layout, observed, { ...beforeRetryReports, version: 12 })[0]).toMatch(/went back from v13 to v12 .*the run's own status, no iteration progress yet/);
  });

  it("holds a retried attempt to the versions seen before its iteration: the failed attempt's train step is done again", () => {
    // Iteration 1 starts from v1; attempt 1 trains (v2) and fails in its stop; attempt 2 reports v1 until it has trained.
    let observed = observeVersions({ highest: 0, committed: 0 }, { version: 1, iteration: 0, phase: 'sync', iterationAttempt: 1 });
    observed = observeVersions(observed, { version: 1, iteration: 1, phase: 'rollout', iterationAttempt: 1 });
    observed = observeVersions(observed, { version: 2, iteration: 1, phase: 'stop', iterationAttempt: 1 });
    const retried = { version: 1, iteration: 1, phase: 'rollout' as const, iterationAttempt: 2 };
    expect(checkObservedStatus(layout, observed, retried)).toEqual([]);
    observed = observeVersions(observed, retried);
    expect(observed.highest).toBe(1);
    // Within the retry, going back after its own train step is caught.
    const afterTrain = observeVersions(observed, { ...retried, version: 2, phase: 'sync' });
    expect(checkObservedStatus(layout, afterTrain, { ...retried, phase: 'sync' })[0]).toMatch(/went back from v2 to v1/);
    // A retry below the iteration's starting version is caught, as is a later iteration going back.
    expect(checkObservedStatus(layout, observed, { ...retried, version: 0, iterationAttempt: 3 })[0]).toMatch(/went back from v1 to v0 .*attempt 3/);
    const stillAttemptOne = observeVersions({ highest: 0, committed: 0 }, { version: 2, iteration: 1, phase: 'stop', iterationAttempt: 1 });
    expect(checkObservedStatus(layout, stillAttemptOne, { version: 1, iteration: 2, phase: 'rollout', iterationAttempt: 1 })[0]).toMatch(/went back from v2 to v1/);
    expect(checkObservedStatus(layout, stillAttemptOne, { version: 1, iteration: 1, phase: 'stop', iterationAttempt: 1 })[0]).toMatch(/went back from v2 to v1/);
  });

  it('fails on a GPU both serving and training', () => {
    const pool = initialPoolState(layout);
    pool.roles[0] = 'training';
    expect(checkObservedStatus(layout, { highest: 0, committed: 0 }, { version: 0, iteration: 0, phase: 'train', pool }).join()).toMatch(/no GPU both serving and training/);
  });
});
