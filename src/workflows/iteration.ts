/**
 * One training iteration as a durable workflow: a thin driver of the iteration program
 * (src/iteration/program.ts), whose effects are activities and timers (iterationEffects.ts). The
 * simulator runs the same program in virtual time.
 *
 * A failure restores a consistent pool (every rank resident, no shard running, trainer offloaded)
 * and fails the attempt, visibly; the retry resumes from the store (a sealed batch goes straight
 * to training). Ranks found lost fail it non-retryably with `RanksLost`: the run workflow starts
 * the iteration again without them.
 */
import { ApplicationFailure, setHandler, workflowInfo } from '@temporalio/workflow';
import { PIPELINE_POLICY } from '../gpu';
import { stalenessAdmission } from '../iteration/admission';
import { IterationFailure, PoolBelowMinimum, runIteration } from '../iteration/program';
import { ranksReleasedAtShrink } from '../iteration/operations';
import { createIterationState, type ProgramInput } from '../iteration/state';
import { describeError } from '../contract/errors';
import type { IterationInput, IterationProgress, IterationResult } from '../contract/types';
import { assertDecoded } from '../temporal/payloadConverter';
import { drive } from './drive';
import { iterationActivities } from './iterationActivities';
import { temporalEffects } from './iterationEffects';
import { LostNodes } from './lostNodes';
import { iterationProgressQuery } from './signals';

/** The program's input for attempt `attempt` of this iteration workflow. */
export function programInput(input: IterationInput, attempt: number): ProgramInput {
  const { spec } = input;
  // The run's staleness policy (src/gpu/staleness.ts); runs started before it had one: 'drop'.
  const staleness = spec.staleness ?? { policy: 'drop' as const };
  return {
    layout: spec.layout,
    iteration: input.iteration,
    fromVersion: input.version,
    ledger: input.ledger,
    batchSize: input.batchSize,
    asyncRatio: spec.asyncRatio,
    maxConcurrentSamples: spec.maxConcurrentSamples,
    ...(spec.kvCapacityTokensPerRank === undefined ? {} : { kvCapacityTokensPerRank: spec.kvCapacityTokensPerRank }),
    maxContextTokens: spec.maxTokens,
    ...(staleness.maxTokenLag === undefined ? {} : { maxTokenLag: staleness.maxTokenLag }),
    ...(input.shrinkOverride === undefined ? {} : { shrinkOverride: input.shrinkOverride }),
    lostRanks: input.lostRanks ?? [],
    rejoinRanks: input.rejoinRanks ?? [],
    options: { policy: PIPELINE_POLICY, admission: stalenessAdmission(staleness.policy) },
    ...(spec.weightSync === undefined ? {} : { weightSync: spec.weightSync }),
    ...(input.weightGroup === undefined ? {} : { weightGroup: input.weightGroup }),
    // A retried attempt may find what the failed one admitted, completed or sealed.
    recoverFromStore: input.ledgerMatchesStore !== true || attempt > 1,
  };
}

export async function iterationWorkflow(input: IterationInput): Promise<IterationResult> {
  assertDecoded('iteration workflow input', input);
  const lost = new LostNodes(input.spec.layout);
  // Asked by the CLI (merged into the run's status), never sent: no round trip on the critical path.
  let progress: IterationProgress | null = null;
  setHandler(iterationProgressQuery, () => progress);
  const program = programInput(input, workflowInfo().attempt);
  const fx = temporalEffects({
    spec: input.spec,
    iteration: input.iteration,
    activities: iterationActivities(input.spec),
    lost,
    // Evaluated at the first launch, once the program has checked the shrink set.
    releasedAtShrink: () => ranksReleasedAtShrink(program),
    ...(input.engineKvCapacity === undefined ? {} : { engineKvCapacity: input.engineKvCapacity }),
    onProgress: (report) => (progress = { ...report, attempt: workflowInfo().attempt }),
  });
  const state = createIterationState(program, fx.now());
  try {
    const result = await drive(runIteration(fx, state));
    const engineKvCapacity = fx.engineKvCapacity();
    return {
      version: result.version,
      ledger: state.ledger,
      stats: result.stats,
      decisions: result.decisions,
      ...(result.weightGroup === undefined ? {} : { weightGroup: result.weightGroup }),
      ...(engineKvCapacity.length === 0 ? {} : { engineKvCapacity }),
    };
  } catch (error) {
    throw failureOf(input, lost, error);
  }
}

/**
 * The workflow failure for a failed program: retryable unless ranks were lost or the pool could not be restored.
 * Its message numbers the iteration from 1, as the CLI does (workflow `-iter-<k>` is iteration k + 1).
 */
function failureOf(input: IterationInput, lost: LostNodes, error: unknown): unknown {
  const { iteration, spec } = input;
  const attempt = workflowInfo().attempt;
  if (error instanceof PoolBelowMinimum) return ApplicationFailure.nonRetryable(error.message, 'PoolBelowMinimum');
  if (!(error instanceof IterationFailure)) return error;
  if (error.restoreProblems.length > 0) {
    return ApplicationFailure.nonRetryable(
      `iteration ${iteration + 1} failed in phase '${error.phase}' (${describeError(error.cause)}) and could not restore the pool: ${error.restoreProblems.join('; ')}` +
        (error.committedVersion === undefined ? '' : ` (weights v${error.committedVersion} were already trained)`),
      'PoolRestoreFailed',
    );
  }
  if (error.lostRanks.length > 0) {
    // Not retried here: the run workflow records the lost ranks and starts the iteration again without them.
    return ApplicationFailure.create({
      type: 'RanksLost',
      nonRetryable: true,
      message:
        `iteration ${iteration + 1} attempt ${attempt}: ranks ${error.lostRanks.join(',')} lost in phase '${error.phase}' ` +
        `(no worker took their activities for ${(spec.lostNodeTimeoutMs ?? 0) / 1000} s); pool restored without them`,
      details: [{ ranks: error.lostRanks, trainerNode: lost.trainerNode ?? null }],
    });
  }
  return ApplicationFailure.retryable(`iteration ${iteration + 1} attempt ${attempt} failed in phase '${error.phase}': ${describeError(error.cause)}; pool restored to serving`, 'IterationFailed');
}
