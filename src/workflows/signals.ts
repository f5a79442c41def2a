/**
 * Signals, queries and updates of the run workflow. Update payloads are validated with zod in
 * the update validators: a bad payload is rejected before it reaches the workflow (and before it
 * is written to history), and the run carries on untouched. Signals cannot be rejected (they are
 * in history once sent): the handler validates with `iterationProgressSchema` and ignores a bad
 * payload visibly (a warning in the worker log, a count and the reason in the status query).
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';
import type { PoolLayout } from '../gpu/layout';
import { GPU_ROLES, RANK_PHASES } from '../gpu/roles';
import type { IterationProgress, Phase, RunStatus } from '../contract/types';

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

export const batchSizeUpdateSchema = z.object({ batchSize: z.number().int().min(1) }).strict();
export const shrinkSetUpdateSchema = z.object({ ranks: z.array(z.number().int().nonnegative()).nullable() }).strict();

const PHASES = ['starting', 'rollout', 'shrink', 'train', 'stop', 'sync', 'expand', 'recovering', 'done'] as const satisfies readonly Phase[];
/** Compile-time check that PHASES lists every Phase (a new phase must be added here too). */
const _everyPhaseListed: Exclude<Phase, (typeof PHASES)[number]> extends never ? true : never = true;
const count = () => z.number().int().nonnegative();

/** A progress signal from an iteration of this run's layout (pool arrays sized to the pool). */
export function iterationProgressSchema(layout: PoolLayout): z.ZodType<IterationProgress> {
  const gpus = layout.nodes * layout.gpusPerNode;
  return z
    .object({
      iteration: count(),
      phase: z.enum(PHASES),
      pool: z
        .object({
          roles: z.array(z.enum(GPU_ROLES)).length(gpus),
          rankPhases: z.array(z.enum(RANK_PHASES)).length(layout.ranks.length),
        })
        .strict(),
      version: count(),
      samplesRunning: count(),
      samplesCompleted: count(),
      samplesWaiting: count(),
      batchSamples: count(),
      sequence: count().optional(),
      token: z.string().max(64).optional(),
    })
    .strict();
}
export const returnRanksUpdateSchema = z.object({ ranks: z.array(z.number().int().nonnegative()).min(1) }).strict();
