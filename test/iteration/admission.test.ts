/** The program's carry-over/admission decision under each staleness policy (src/iteration/admission.ts). */
import { describe, expect, it } from 'vitest';
import { admit, assignToShard, emptyLedger, sealBatch, settleShard } from '../../src/gpu';
import { STALENESS_BOUND_ADMISSION, stalenessAdmission } from '../../src/iteration/admission';

describe('stalenessAdmission', () => {
  // Samples 0 and 1 admitted at v0 (waiting), 2 at v2.
  let ledger = admit(emptyLedger(), 2, 0).ledger;
  ledger = admit(ledger, 1, 2).ledger;
  const bound = { batchSize: 2, asyncRatio: 1, maxConcurrentSamples: 10, reportedCompleted: 0, kvCapacityTokens: undefined, ranksRollingOut: 2, maxContextTokens: 1000 };

  it("'drop' drops the samples that lag the train version by more than the async ratio, as 'stale'", () => {
    expect(stalenessAdmission('drop').carryOver({ ledger, trainVersion: 2, asyncRatio: 1 })).toEqual({ drop: [{ ids: [0, 1], reason: 'stale' }] });
    expect(STALENESS_BOUND_ADMISSION.carryOver({ ledger, trainVersion: 1, asyncRatio: 1 })).toEqual({ drop: [] });
  });

  it("'resume' carries every sample over", () => {
    expect(stalenessAdmission('resume').carryOver({ ledger, trainVersion: 9, asyncRatio: 1 })).toEqual({ drop: [] });
  });

  it("admits up to maxConcurrentSamples under 'drop', and within (asyncRatio + 1) × batchSize under 'resume'", () => {
    expect(stalenessAdmission('drop').admissionRoom({ ledger, ...bound, batchSealed: false })).toBe(7);
    expect(stalenessAdmission('drop').admissionRoom({ ledger, ...bound, batchSealed: true })).toBe(5);
    expect(stalenessAdmission('resume').admissionRoom({ ledger, ...bound, batchSealed: true })).toBe(0);
  });

  it("'resume' counts waiting and running samples against the running cap, less those the store reports completed", () => {
    // Three live samples rolling out and a cap of one batch (2): no room until they complete.
    expect(stalenessAdmission('resume').admissionRoom({ ledger, ...bound, batchSealed: false })).toBe(0);
    // All three reported completed: the staleness bound (4 live) leaves one.
    expect(stalenessAdmission('resume').admissionRoom({ ledger, ...bound, batchSealed: false, reportedCompleted: 3 })).toBe(1);
    expect(stalenessAdmission('resume').admissionPoint({ ledger, ...bound, batchSealed: false, completed: 0 })).toBe(2);
    expect(() => stalenessAdmission('resume').admissionRoom({ ledger, ...bound, batchSealed: false, reportedCompleted: 4 })).toThrow(/samples reported completed/);
  });

  it("'resume' caps running samples at the KV capacity of the ranks rolling out over the trained samples' resident context", () => {
    // Six samples admitted at v0; 0 and 1 trained with contexts 1000 and 3000 tokens: a rolling
    // sample holds 1250 tokens on average (E[L²] / (2 E[L])), standard deviation 1021.
    let run = admit(emptyLedger(), 6, 0).ledger;
    run = settleShard(assignToShard(run, [0, 1], 0, 's'), 's', []);
    const kv = { ...bound, batchSize: 8, maxConcurrentSamples: 100, batchSealed: false, kvCapacityTokens: 5000 };
    // Nothing trained yet: each rolling sample counts as growing towards maxTokens (1000: μ 500,
    // σ 289), so two ranks × 2500 tokens hold 7 (3.87 each) and the four waiting leave room for 3
    // (the batch size alone would leave 4).
    expect(stalenessAdmission('resume').admissionRoom({ ledger: run, ...kv })).toBe(3);
    expect(stalenessAdmission('resume').admissionRoom({ ledger: run, ...kv, kvCapacityTokens: undefined })).toBe(4);
    run = sealBatch(run, [0, 1], { tokens: 4000, squaredTokens: 10_000_000 });
    // Two ranks × 2500 tokens hold 2 with the margin (n · 1250 + √n · 1021 ≤ 2500: n = 1.13 each,
    // at least one per rank; 4 without it): the four rolling out exceed them. Three × 4000 hold 6.
    expect(stalenessAdmission('resume').admissionRoom({ ledger: run, ...kv })).toBe(0);
    expect(stalenessAdmission('resume').admissionRoom({ ledger: run, ...kv, ranksRollingOut: 3, kvCapacityTokens: 12_000 })).toBe(2);
    expect(stalenessAdmission('resume').admissionRoom({ ledger: run, ...kv, kvCapacityTokens: undefined })).toBe(4);
    expect(stalenessAdmission('resume').admissionPoint({ ledger: run, ...kv, ranksRollingOut: 3, kvCapacityTokens: 12_000, completed: 0 })).toBe(1);
    // 'drop' (the baseline) has no KV cap.
    expect(stalenessAdmission('drop').admissionRoom({ ledger: run, ...kv })).toBe(96);
  });
});
