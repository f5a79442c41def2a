/** Declared faults of the simulated engines (config `simulation.faults`): which calls fail. */
import { describe, expect, it } from 'vitest';
import { faultSchema } from '../../src/engines/types';
import { FaultPlan, SimulatedEngineFault } from '../../src/engines/simulated/faults';

function outcomes(plan: FaultPlan, calls: number, at = 0): ('ok' | 'fail')[] {
  return Array.from({ length: calls }, () => {
    try {
      plan.check('trainer', 'trainStep', at);
      return 'ok';
    } catch (error) {
      expect(error).toBeInstanceOf(SimulatedEngineFault);
      return 'fail';
    }
  });
}

describe('FaultPlan', () => {
  it('fails the first `failures` calls, then lets every call pass', () => {
    const plan = new FaultPlan([faultSchema.parse({ target: 'trainer', operation: 'trainStep', failures: 2 })]);
    expect(outcomes(plan, 4)).toEqual(['fail', 'fail', 'ok', 'ok']);
  });

  it('with `after`, lets that many calls pass first (a fault in a later iteration)', () => {
    const plan = new FaultPlan([faultSchema.parse({ target: 'trainer', operation: 'trainStep', failures: 2, after: 1 })]);
    expect(outcomes(plan, 5)).toEqual(['ok', 'fail', 'fail', 'ok', 'ok']);
  });

  it('counts only the calls it matches (operation and node)', () => {
    const plan = new FaultPlan([faultSchema.parse({ target: 'trainer', operation: 'trainStep', failures: 1, after: 1, at: 1 })]);
    expect(outcomes(plan, 3, 0)).toEqual(['ok', 'ok', 'ok']);
    expect(outcomes(plan, 3, 1)).toEqual(['ok', 'fail', 'ok']);
  });

  it('refuses a negative or fractional `after`', () => {
    expect(faultSchema.safeParse({ target: 'trainer', operation: 'trainStep', failures: 1, after: -1 }).success).toBe(false);
    expect(faultSchema.safeParse({ target: 'trainer', operation: 'trainStep', failures: 1, after: 0.5 }).success).toBe(false);
  });
});
