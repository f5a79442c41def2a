/**
 * Which samples an iteration carries over and how many new ones it admits: one named, pure
 * decision that the program calls at the start of an iteration and at every refill, so that a
 * staleness policy can be swapped without touching the flow.
 */
import { staleIds, type DropReason, type SampleLedger } from '../gpu';

export interface CarryOverDecision {
  /** Live samples to drop before the iteration starts, with the reason. */
  drop: { ids: number[]; reason: DropReason }[];
}

export interface AdmissionPolicy {
  /** At the start of an iteration: what of the carried samples the new weights still admit. */
  carryOver(input: { ledger: SampleLedger; trainVersion: number; asyncRatio: number }): CarryOverDecision;
  /** How many new samples to admit now so that at most `liveTarget` samples are live. */
  admissionRoom(input: { ledger: SampleLedger; liveTarget: number }): number;
}

/**
 * The rule of docs/design.md §3.1: a sample whose start version lags the weights by more than
 * the async ratio is dropped as stale; new samples fill up to the live target.
 */
export const STALENESS_BOUND_ADMISSION: AdmissionPolicy = {
  carryOver({ ledger, trainVersion, asyncRatio }) {
    const stale = staleIds(ledger, trainVersion, asyncRatio);
    return { drop: stale.length === 0 ? [] : [{ ids: stale, reason: 'stale' }] };
  },
  admissionRoom({ ledger, liveTarget }) {
    return Math.max(0, liveTarget - ledger.live.length);
  },
};
