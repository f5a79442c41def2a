/**
 * A run's status as an operator sees it: the run workflow's `status` query (its ledger, counters,
 * operator state) with the running iteration's `progress` query merged in (phase, pool, weight
 * version, sample counts). The iteration is asked, not heard from: it sends the run no progress
 * signal, so no acknowledgement workflow task sits on a transition's critical path, and nothing
 * sent from outside can fake progress.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { z } from 'zod';
import { GPU_ROLES, RANK_PHASES } from '../gpu/roles';
import { describeError } from '../contract/errors';
import { PROGRESS_QUERY, runWorkflowId, STATUS_QUERY } from '../contract/naming';
import type { IterationProgress, Phase, RunStatus } from '../contract/types';

/** Every phase, in the order an iteration passes them (`recovering`: a failed attempt's restore). */
export const PHASES = ['starting', 'rollout', 'shrink', 'train', 'stop', 'sync', 'expand', 'recovering', 'done'] as const satisfies readonly Phase[];
/** Compile-time check that PHASES lists every Phase (a new phase must be added here too). */
const _everyPhaseListed: Exclude<Phase, (typeof PHASES)[number]> extends never ? true : never = true;
const count = () => z.number().int().nonnegative();

/** The iteration's answer to its progress query: null before its first phase report. */
export const iterationProgressSchema: z.ZodType<IterationProgress> = z
  .object({
    iteration: count(),
    attempt: z.number().int().positive().optional(),
    phase: z.enum(PHASES),
    pool: z.object({ roles: z.array(z.enum(GPU_ROLES)), rankPhases: z.array(z.enum(RANK_PHASES)) }).strict(),
    version: count(),
    samplesRunning: count(),
    samplesCompleted: count(),
    samplesWaiting: count(),
    batchSamples: count(),
  })
  .strict();

/** Phases after the train step (the batch is trained; shards stop, weights sync, ranks expand). */
function trainStepDone(phase: Phase): boolean {
  return phase === 'stop' || phase === 'sync' || phase === 'expand' || phase === 'done';
}

/** The run's status with its running iteration's progress (none, or another iteration's: unchanged). */
export function withIterationProgress(status: RunStatus, progress: IterationProgress | null): RunStatus {
  if (progress === null || progress.iteration !== status.iteration) return status;
  return {
    ...status,
    phase: progress.phase,
    version: progress.version,
    pool: progress.pool,
    ...(progress.attempt === undefined ? {} : { iterationAttempt: progress.attempt }),
    samples: {
      ...status.samples,
      // The iteration's batch counts as trained once its train step is done.
      trained: status.samples.trained + (trainStepDone(progress.phase) ? progress.batchSamples : 0),
      running: progress.samplesRunning,
      completedWaiting: progress.samplesCompleted,
      waiting: progress.samplesWaiting,
    },
  };
}

/** Parses the progress query's answer; a malformed one is an error naming the workflow. */
export function parseIterationProgress(workflowId: string, answer: unknown): IterationProgress | null {
  if (answer === null) return null;
  const parsed = iterationProgressSchema.safeParse(answer);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(answer)'}: ${issue.message}`).join('; ');
    throw new Error(`progress query of ${workflowId}: malformed answer: ${issues}`);
  }
  return parsed.data;
}

/** The iteration's progress query gets this long: the run's own answer must not wait on it. */
const PROGRESS_QUERY_TIMEOUT_MS = 5_000;

/**
 * Queries the run's status and, while an iteration runs, that iteration's progress. An error of
 * the run's query propagates (the watchers tell an outage from a query no worker answers). The
 * iteration's query can fail while the run answers (its workflow task failing and retried, a
 * retried child not started yet, local activities holding its workflow task past the deadline, a
 * malformed answer): the run's status is returned then, with `progressUnavailable` saying why.
 * An iteration the server does not know yet (the run is starting it) leaves the status as is.
 */
export async function queryRunStatus(client: Client, runId: string): Promise<RunStatus> {
  const status = await client.workflow.getHandle(runWorkflowId(runId)).query<RunStatus>(STATUS_QUERY);
  const iterationId = status.iterationWorkflowId;
  if (iterationId === undefined) return status;
  try {
    const answer = await client.withDeadline(Date.now() + PROGRESS_QUERY_TIMEOUT_MS, () => client.workflow.getHandle(iterationId).query(PROGRESS_QUERY));
    return withIterationProgress(status, parseIterationProgress(iterationId, answer));
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return status;
    return { ...status, progressUnavailable: `progress query of ${iterationId} failed: ${describeError(error).split('\n')[0] ?? ''}` };
  }
}

