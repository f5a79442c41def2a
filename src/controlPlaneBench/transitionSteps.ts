/**
 * Where a transition's time goes: the sequential steps of batch→train and train→rolling read off
 * an iteration's history and the next one's (server event times). Each step ends where the next
 * begins, so the steps of a transition add up to it (batch→train from the moment the batch watch
 * returned: the store poll's lag before it is the bench's "seen lag").
 */
import { temporal } from '@temporalio/proto';
import { activitySpans, eventMs, iterationMoments, type ActivitySpan } from './historyFigures';

type History = temporal.api.history.v1.IHistory;
const EventType = temporal.api.enums.v1.EventType;

export interface TransitionSteps {
  iteration: number;
  /** Step name → ms; a step the iteration did not take (no shard to stop) is absent. */
  batchToTrain: Record<string, number>;
  /** Absent for the last iteration (no next one to start rolling). */
  trainToRolling?: Record<string, number>;
}

export const BATCH_TO_TRAIN_STEPS = [
  'seal: workflow task issuing the released ranks’ stop beside the manifest',
  'shrink: stop the released ranks’ shards until the settle task starts',
  'shrink: workflow task settling and re-sharding',
  'manifest (if still being written), then release + trainer onload (activities)',
  'onload done → trainStep started',
] as const;

export const TRAIN_TO_ROLLING_STEPS = [
  'stop every shard ‖ trainer offload, until the settle task starts',
  'workflow task settling',
  'sync + reload (activity, from the settle task’s end)',
  'sync done → iteration closed',
  'iteration closed → next iteration started (run workflow task)',
  'next iteration: first workflow task (recover from the store; relaunch the carried samples, or admit when none is carried)',
  'first workflow task done → every rank’s first shard started',
] as const;

/** A workflow task as recorded: its start and completion (ms). */
interface WorkflowTask {
  startedMs: number;
  completedMs: number;
}

function workflowTasks(history: History): WorkflowTask[] {
  const tasks: WorkflowTask[] = [];
  let startedMs: number | undefined;
  for (const event of history.events ?? []) {
    if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED) startedMs = eventMs(event);
    else if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) {
      tasks.push({ startedMs: startedMs ?? eventMs(event), completedMs: eventMs(event) });
    }
  }
  return tasks;
}

/** The workflow task that settles a stop: the first to start once its direct stops answered. */
function settleTask(tasks: readonly WorkflowTask[], stops: readonly ActivitySpan[]): WorkflowTask | undefined {
  if (stops.length === 0) return undefined;
  const answered = lastClosed(stops, 'stopShards');
  return tasks.find((task) => task.startedMs >= answered);
}

function lastClosed(spans: readonly ActivitySpan[], what: string): number {
  const closed = spans.map((span) => span.closedMs).filter((ms): ms is number => ms !== undefined);
  if (closed.length === 0 || closed.length !== spans.length) throw new Error(`iteration history: ${what} not closed`);
  return Math.max(...closed);
}

export function transitionSteps(iteration: number, history: History, next: History | undefined): TransitionSteps {
  const spans = activitySpans(history);
  const tasks = workflowTasks(history);
  const moments = iterationMoments(history);
  const trainScheduled = Math.min(...spans.filter((span) => span.name === 'trainStep').map((span) => span.scheduledMs));
  const onloads = spans.filter((span) => span.name === 'trainerOnload');
  // The workflow task that took the batch watch's answer: it seals the batch and issues the stop.
  // A batch complete at the iteration's start was sealed by the first task, whose end is batchSeenMs.
  const watched = spans.some((span) => span.name === 'awaitBatch');
  const sealTask = watched ? tasks.find((task) => task.startedMs >= moments.batchSeenMs) : undefined;
  const batchToTrain: Record<string, number> = {};
  const sealedMs = sealTask?.completedMs ?? moments.batchSeenMs;
  batchToTrain[BATCH_TO_TRAIN_STEPS[0]] = sealedMs - moments.batchSeenMs;
  const shrinkStops = spans.filter((span) => span.name === 'stopShards' && span.scheduledMs >= sealedMs && span.scheduledMs < trainScheduled);
  let shrunkMs = sealedMs;
  const settle = settleTask(tasks, shrinkStops);
  if (settle !== undefined) {
    batchToTrain[BATCH_TO_TRAIN_STEPS[1]] = settle.startedMs - sealedMs;
    batchToTrain[BATCH_TO_TRAIN_STEPS[2]] = settle.completedMs - settle.startedMs;
    shrunkMs = settle.completedMs;
  }
  // The train step waits for the onload (begun once the manifest is in), not for the kept ranks'
  // admission beside it.
  const onloadDone = onloads.length === 0 ? shrunkMs : Math.max(shrunkMs, lastClosed(onloads, 'trainerOnload'));
  batchToTrain[BATCH_TO_TRAIN_STEPS[3]] = onloadDone - shrunkMs;
  batchToTrain[BATCH_TO_TRAIN_STEPS[4]] = moments.trainStartedMs - onloadDone;
  if (next === undefined) return { iteration, batchToTrain };

  const syncs = spans.filter((span) => span.name === 'syncAndReloadNode' && span.scheduledMs >= moments.trainDoneMs);
  const stopSettle = settleTask(tasks, spans.filter((span) => span.name === 'stopShards' && span.scheduledMs >= moments.trainDoneMs));
  const settledMs = stopSettle?.completedMs ?? moments.trainDoneMs;
  const trainToRolling: Record<string, number> = {};
  if (stopSettle !== undefined) {
    trainToRolling[TRAIN_TO_ROLLING_STEPS[0]] = stopSettle.startedMs - moments.trainDoneMs;
    trainToRolling[TRAIN_TO_ROLLING_STEPS[1]] = stopSettle.completedMs - stopSettle.startedMs;
  }
  const syncDone = syncs.length === 0 ? settledMs : lastClosed(syncs, 'syncAndReloadNode');
  trainToRolling[TRAIN_TO_ROLLING_STEPS[2]] = syncDone - settledMs;
  trainToRolling[TRAIN_TO_ROLLING_STEPS[3]] = moments.closedMs - syncDone;
  const after = iterationMoments(next);
  const nextFirst = workflowTasks(next)[0];
  if (nextFirst === undefined) throw new Error(`iteration ${iteration + 1} history: no completed workflow task`);
  trainToRolling[TRAIN_TO_ROLLING_STEPS[4]] = after.startedMs - moments.closedMs;
  trainToRolling[TRAIN_TO_ROLLING_STEPS[5]] = nextFirst.completedMs - after.startedMs;
  trainToRolling[TRAIN_TO_ROLLING_STEPS[6]] = after.rolloutStartedMs - nextFirst.completedMs;
  return { iteration, batchToTrain, trainToRolling };
}
