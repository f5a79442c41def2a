/**
 * Signals, queries and updates of the run workflow. Update payloads are validated with zod in
 * the update validators: a bad payload is rejected before it reaches the workflow (and before it
 * is written to history), and the run carries on untouched.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';
import type { IterationProgress, RunStatus } from '../pipeline/types';

export const iterationProgressSignal = defineSignal<[IterationProgress]>('iterationProgress');
export const statusQuery = defineQuery<RunStatus>('status');

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

/**
 * Patch ids of workflow changes (docs/design.md §5.2): `patched(id)` is true in new executions and
 * false when replaying a history recorded before the change.
 */
export const LOST_RANKS_PATCH = 'lost-ranks';

export const batchSizeUpdateSchema = z.object({ batchSize: z.number().int().min(1) }).strict();
export const shrinkSetUpdateSchema = z.object({ ranks: z.array(z.number().int().nonnegative()).nullable() }).strict();
export const returnRanksUpdateSchema = z.object({ ranks: z.array(z.number().int().nonnegative()).min(1) }).strict();
