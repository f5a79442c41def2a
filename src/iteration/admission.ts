/**
 * Which samples an iteration carries over and how many new ones it admits: one named, pure
 * decision that the program calls at the start of an iteration and at every refill, so that a
 * staleness policy can be swapped without touching the flow. The rules themselves are the
 * staleness policies of src/gpu/staleness.ts.
 */
import { admissionPoint, admissionRoom, carryOverStaleIds, checkIntRange, kvRunningCap, type AdmissionInput, type DropReason, type SampleLedger, type StalenessPolicy } from '../gpu';

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
  /**
   * Live samples the store reports completed while their shard still runs (the ledger learns it
   * when the shard settles): they no longer roll out. 0 when not known.
   */
  reportedCompleted: number;
  /** KV-cache tokens the ranks rolling out hold together (`rollingKvCapacity`); undefined: no KV cap. */
  kvCapacityTokens: number | undefined;
  /** The ranks rolling out, where the admitted samples go. */
  ranksRollingOut: number;
  /** rollout.maxTokens: the KV cap's estimate before the run trained a batch (`kvRunningCap`). */
  maxContextTokens: number;
}

export interface AdmissionPolicy {
  /** At the start of an iteration: what of the carried samples the new weights still admit. */
  carryOver(input: { ledger: SampleLedger; trainVersion: number; asyncRatio: number }): CarryOverDecision;
  /** How many new samples to admit now. */
  admissionRoom(input: AdmissionRoomInput): number;
  /** While the batch fills: after how many completed candidates to admit again (batchSize: not before the batch). */
  admissionPoint(input: AdmissionRoomInput & { completed: number }): number;
}

/** The admission decision of a staleness policy ('resume': nothing dropped for its age; 'drop': docs/design.md §3.1). */
export function stalenessAdmission(policy: StalenessPolicy): AdmissionPolicy {
  return {
    carryOver({ ledger, trainVersion, asyncRatio }) {
      const stale = carryOverStaleIds(ledger, trainVersion, asyncRatio, policy);
      return { drop: stale.length === 0 ? [] : [{ ids: stale, reason: 'stale' }] };
    },
    admissionRoom(input) {
      return admissionRoom(boundInput(policy, input));
    },
    admissionPoint({ completed, ...input }) {
      return admissionPoint({ ...boundInput(policy, input), completed });
    },
  };
}

function boundInput(policy: StalenessPolicy, input: AdmissionRoomInput): AdmissionInput {
  const { ledger, reportedCompleted, kvCapacityTokens, ranksRollingOut, maxContextTokens, ...bound } = input;
  const kvCap = kvCapacityTokens === undefined ? undefined : kvRunningCap({ kvCapacityTokens, ranksRollingOut, trainedContext: ledger.counters.trainedContext, maxContextTokens });
  return { policy, live: ledger.live.length, running: rolling(ledger, reportedCompleted), ...bound, ...(kvCap === undefined ? {} : { kvRunningCap: kvCap }) };
}

/** Live samples still rolling out: waiting or running in the ledger, less those the store reports completed. */
function rolling(ledger: SampleLedger, reportedCompleted: number): number {
  const unfinished = ledger.live.filter((sample) => sample.state !== 'completed').length;
  return unfinished - checkIntRange('admission: samples reported completed', reportedCompleted, 0, unfinished);
}

/**
 * The rule of docs/design.md §3.1, kept as the 'drop' baseline: a sample whose start version lags
 * the weights by more than the async ratio is dropped as stale; new samples fill up to
 * maxConcurrentSamples (− batchSize once the batch is sealed).
 */
export const STALENESS_BOUND_ADMISSION: AdmissionPolicy = stalenessAdmission('drop');
