/** The fault schedule of the harness: seeded, covers every kind × phase before repeating, validated. */
import { describe, expect, it } from 'vitest';
import { coverage, FAULT_KINDS, FAULT_PHASES, planFaults } from '../../src/chaos/schedule';
import { ValidationError } from '../../src/gpu';

describe('fault schedule', () => {
  it('is the same for the same seed and differs for another', () => {
    expect(planFaults({ seed: 7, count: 40 })).toEqual(planFaults({ seed: 7, count: 40 }));
    expect(planFaults({ seed: 8, count: 40 })).not.toEqual(planFaults({ seed: 7, count: 40 }));
  });

  it('covers every kind × phase pair exactly once in its first 35 faults, then draws more', () => {
    const plan = planFaults({ seed: 1, count: 50 });
    expect(plan).toHaveLength(50);
    const first = plan.slice(0, FAULT_KINDS.length * FAULT_PHASES.length);
    expect(new Set(first.map((f) => `${f.kind}@${f.phase}`)).size).toBe(35);
    expect(coverage(first)).toEqual({ covered: 35, total: 35, missing: [] });
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
