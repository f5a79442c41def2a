/** The fault schedule of the harness: seeded, covers every kind × phase before repeating, validated. */
import { describe, expect, it } from 'vitest';
import { coverage, deferRolloutFault, FAULT_KINDS, FAULT_PHASES, planFaults, type PlannedFault } from '../../src/chaos/schedule';
import { ValidationError } from '../../src/gpu';

describe('fault schedule', () => {
  it('is the same for the same seed and differs for another', () => {
    expect(planFaults({ seed: 7, count: 40 })).toEqual(planFaults({ seed: 7, count: 40 }));
    expect(planFaults({ seed: 8, count: 40 })).not.toEqual(planFaults({ seed: 7, count: 40 }));
  });

  it('covers every applicable kind × phase pair exactly once in its first 38 faults, then draws more', () => {
    const plan = planFaults({ seed: 1, count: 50 });
    expect(plan).toHaveLength(50);
    // Every kind in every phase, but a restart only in rollout, shrink and sync.
    const pairs = FAULT_KINDS.length * FAULT_PHASES.length - 2;
    expect(pairs).toBe(38);
    const first = plan.slice(0, pairs);
    expect(new Set(first.map((f) => `${f.kind}@${f.phase}`)).size).toBe(38);
    expect(coverage(first)).toEqual({ covered: 38, total: 38, missing: [] });
    for (const fault of plan) expect(fault.kind !== 'engine-restart' || ['rollout', 'shrink', 'sync'].includes(fault.phase)).toBe(true);
    expect(plan.map((f) => f.index)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    for (const fault of plan) {
      expect(fault.point).toBeGreaterThanOrEqual(0);
      expect(fault.point).toBeLessThan(1);
    }
  });

  it('keeps to the kinds and phases asked for', () => {
    const plan = planFaults({ seed: 3, count: 6, kinds: ['engine-hang', 'server-kill'], phases: ['train', 'sync', 'expand'] });
    expect(new Set(plan.map((f) => `${f.kind}@${f.phase}`)).size).toBe(6);
    for (const fault of plan) {
      expect(['engine-hang', 'server-kill']).toContain(fault.kind);
      expect(['train', 'sync', 'expand']).toContain(fault.phase);
    }
  });

  it('aims a restart at the phases a rollout engine defines only, and says so when none is asked for', () => {
    const plan = planFaults({ seed: 2, count: 6, kinds: ['engine-restart'] });
    expect(new Set(plan.slice(0, 3).map((f) => f.phase))).toEqual(new Set(['rollout', 'shrink', 'sync']));
    expect(() => planFaults({ seed: 1, count: 2, kinds: ['engine-restart'], phases: ['train', 'expand'] })).toThrow(/engine-restart applies to rollout, shrink and sync/);
    expect(coverage([{ kind: 'engine-restart', phase: 'sync' }], ['engine-restart'])).toEqual({ covered: 1, total: 3, missing: ['engine-restart@rollout', 'engine-restart@shrink'] });
  });

  it('rejects a bad count, seed or kind list', () => {
    expect(() => planFaults({ seed: 1, count: 0 })).toThrow(ValidationError);
    expect(() => planFaults({ seed: -1, count: 3 })).toThrow(/seed/);
    expect(() => planFaults({ seed: 1, count: 3, kinds: [] })).toThrow(/fault kinds/);
    expect(() => planFaults({ seed: 1, count: 3, phases: ['train', 'train'] })).toThrow(/fault phases/);
  });

  it('coverage names what is missing', () => {
    const result = coverage([{ kind: 'server-kill', phase: 'train' }]);
    expect(result.covered).toBe(1);
    expect(result.missing).toContain('server-kill@rollout');
    expect(result.missing).not.toContain('server-kill@train');
  });
});

describe('coverage of the kinds and phases asked for', () => {
  it('counts the pairs of the selection only', () => {
    const struck = [
      { kind: 'server-kill' as const, phase: 'train' },
      { kind: 'engine-hang' as const, phase: 'train' },
      { kind: 'server-kill' as const, phase: 'sync' },
    ];
    expect(coverage(struck, ['server-kill', 'engine-hang'], ['train', 'sync'])).toEqual({ covered: 3, total: 4, missing: ['engine-hang@sync'] });
    expect(coverage(struck, ['server-kill'], ['train', 'sync'])).toEqual({ covered: 2, total: 2, missing: [] });
  });
});

describe('a fault aimed at rollout, for an iteration without a rollout phase', () => {
  const plan: PlannedFault[] = [
    { index: 0, kind: 'server-kill', phase: 'rollout', point: 0.1 },
    { index: 1, kind: 'engine-error', phase: 'rollout', point: 0.2 },
    { index: 2, kind: 'engine-hang', phase: 'rollout', point: 0.3 },
    { index: 3, kind: 'gpu-node-kill', phase: 'sync', point: 0.4 },
    { index: 4, kind: 'engine-slow', phase: 'train', point: 0.5 },
  ];

  it('changes places with the next fault aimed elsewhere, each keeping its iteration', () => {
    const deferred = deferRolloutFault(plan, 1);
    expect(deferred?.movedTo).toBe(3);
    expect(deferred?.plan.map((f) => `${f.index}:${f.kind}@${f.phase}`)).toEqual([
      '0:server-kill@rollout',
      '1:gpu-node-kill@sync',
      '2:engine-hang@rollout',
      '3:engine-error@rollout',
      '4:engine-slow@train',
    ]);
    expect(deferred?.plan[1]?.point).toBe(0.4);
    expect(plan[1]?.kind).toBe('engine-error');
  });

  it('stays where it is when no later fault is aimed elsewhere, or when it is not aimed at rollout', () => {
    expect(deferRolloutFault(plan.slice(0, 3), 0)).toBeUndefined();
    expect(deferRolloutFault(plan, 3)).toBeUndefined();
    expect(() => deferRolloutFault(plan, 5)).toThrow(/fault to defer/);
  });
});
