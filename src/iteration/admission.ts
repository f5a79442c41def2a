/**
 * Which samples an iteration carries over and how many new ones it admits: one named, pure
 * decision that the program calls at the start of an iteration and at every refill, so that a
 * staleness policy can be swapped without touching the flow. The rules themselves are the
 * staleness policies of src/gpu/staleness.ts.
 */
import { admissionRoom, carryOverStaleIds, type DropReason, type SampleLedger, type StalenessPolicy } from '../gpu';

export interface CarryOverDecision {
  /** Live samples to drop before the iteration starts, with the reason. */
  drop: { ids: number[]; reason: DropReason }[];
}

export interface AdmissionRoomInput {
  ledger: SampleLedger;
  batchSize: number;
  asyncRatio: number;
  maxConcurrentSamples: number;
  /** Whether this iteration's batch is already sealed (admission during train ‖ long tail). */
  batchSealed: boolean;
}

export interface AdmissionPolicy {
  /** At the start of an iteration: what of the carried samples the new weights still admit. */
  carryOver(input: { ledger: SampleLedger; trainVersion: number; asyncRatio: number }): CarryOverDecision;
  /** How many new samples to admit now. */
  admissionRoom(input: AdmissionRoomInput): number;
}

/** The admission decision of a staleness policy ('resume': nothing dropped for its age; 'drop': docs/design.md §3.1). */
export function stalenessAdmission(policy: StalenessPolicy): AdmissionPolicy {
  return {
    carryOver({ ledger, trainVersion, asyncRatio }) {
      const stale = carryOverStaleIds(ledger, trainVersion, asyncRatio, policy);
      return { drop: stale.length === 0 ? [] : [{ ids: stale, reason: 'stale' }] };
    },
    admissionRoom({ ledger, ...bound }) {
      return admissionRoom({ policy, live: ledger.live.length, ...bound });
    },
  };
}

/**
 * The rule of docs/design.md §3.1, kept as the 'drop' baseline: a sample whose start version lags
 * the weights by more than the async ratio is dropped as stale; new samples fill up to
 * maxConcurrentSamples (− batchSize once the batch is sealed).
 */
export const STALENESS_BOUND_ADMISSION: AdmissionPolicy = stalenessAdmission('drop');
