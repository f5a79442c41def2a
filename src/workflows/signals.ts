/**
 * Queries and updates of the run and iteration workflows. Update payloads are validated with zod
 * in the update validators: a bad payload is rejected before it reaches the workflow (and before
 * it is written to history), and the run carries on untouched. The workflows take no signal.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';
import { PROGRESS_QUERY, STATUS_QUERY } from '../contract/naming';
import type { IterationProgress, RunStatus } from '../contract/types';

export const statusQuery = defineQuery<RunStatus>(STATUS_QUERY);
/** The iteration's latest phase report (null before its first); `queryRunStatus` merges it into the run's status. */
export const iterationProgressQuery = defineQuery<IterationProgress | null>(PROGRESS_QUERY);

/** Pause after the current iteration finishes (GPUs stay in their serving state). */
export const pauseUpdate = defineUpdate<RunStatus, []>('pause');
export const resumeUpdate = defineUpdate<RunStatus, []>('resume');
/** Stop after the current iteration; the run workflow then completes. */
export const stopUpdate = defineUpdate<RunStatus, []>('stop');
export const setBatchSizeUpdate = defineUpdate<RunStatus, [{ batchSize: number }]>('setBatchSize');
/** Ranks released at shrink from the next iteration on; `null` returns to the layout's rule. */
export const setShrinkSetUpdate = defineUpdate<RunStatus, [{ ranks: number[] | null }]>('setShrinkSet');

/** The operator brought a lost node back: its ranks rejoin the pool at the next iteration. */
export const returnRanksUpdate = defineUpdate<RunStatus, [{ ranks: number[] }]>('returnRanks');

const buildUpdateSchemas = () => ({
  batchSize: z.object({ batchSize: z.number().int().min(1) }).strict(),
  shrinkSet: z.object({ ranks: z.array(z.number().int().nonnegative()).nullable() }).strict(),
  returnRanks: z.object({ ranks: z.array(z.number().int().nonnegative()).min(1) }).strict(),
});
let updateSchemasBuilt: ReturnType<typeof buildUpdateSchemas> | undefined;

/**
 * The update payloads' schemas, built at the first update a workflow validates: each workflow
 * evaluates this module again, and an iteration workflow takes no update.
 */
export function updateSchemas(): ReturnType<typeof buildUpdateSchemas> {
  updateSchemasBuilt ??= buildUpdateSchemas();
  return updateSchemasBuilt;
}
