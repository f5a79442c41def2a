/**
 * Names derived from the run: workflow ids (deterministic, so a resumed run never repeats an
 * iteration) and task queues (one per rank, one per trainer node, one for the orchestrator).
 * Pure; shared by workflows, workers and the CLI.
 */
import type { NodeId, RankId } from '../gpu/layout';

export const runWorkflowId = (runId: string): string => `timeshare-${runId}`;
export const iterationWorkflowId = (runId: string, iteration: number): string => `timeshare-${runId}-iter-${iteration}`;

export const orchestratorQueue = (prefix: string): string => `${prefix}-orchestrator`;
export const rankQueue = (prefix: string, rank: RankId): string => `${prefix}-rank-${rank}`;
export const trainerQueue = (prefix: string, node: NodeId): string => `${prefix}-trainer-node-${node}`;

/**
 * Shard ids name one set of samples on one rank in one execution of one iteration. A fresh id per
 * execution (`executionTag`: a prefix of its run id) fences a zombie shard of an earlier attempt
 * out of the store.
 */
export const shardId = (iteration: number, executionTag: string, rank: RankId, serial: number): string =>
  `i${iteration}-${executionTag}-r${rank}-s${serial}`;

/** The run workflow's status query, and the iteration workflow's progress query (the running iteration's phase, pool and counts). */
export const STATUS_QUERY = 'status';
export const PROGRESS_QUERY = 'progress';
