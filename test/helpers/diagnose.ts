/** On a failed pipeline test: what the run's current iteration is waiting for, from Temporal itself. */
import type { Client } from '@temporalio/client';
import { iterationWorkflowId, runWorkflowId } from '../../src/contract/naming';
import type { RunStatus } from '../../src/contract/types';

export async function diagnoseRun(client: Client, runId: string): Promise<string> {
  const lines: string[] = [];
  try {
    const status = await client.workflow.getHandle(runWorkflowId(runId)).query<RunStatus>('status');
    lines.push(`status: iteration ${status.iteration} phase ${status.phase} paused ${status.paused} lastError ${status.lastError ?? '-'}`);
    const handle = client.workflow.getHandle(iterationWorkflowId(runId, status.iteration));
    const description = await handle.describe();
    lines.push(`iteration workflow: ${description.status.name}`);
    for (const pending of description.raw.pendingActivities ?? []) {
      lines.push(
        `  pending ${pending.activityType?.name} id=${pending.activityId} state=${pending.state} attempt=${pending.attempt} ` +
          `lastFailure=${pending.lastFailure?.message ?? '-'} lastWorker=${pending.lastWorkerIdentity ?? '-'}`,
      );
    }
    const history = await handle.fetchHistory();
    for (const event of history.events ?? []) {
      const failure =
        event.activityTaskFailedEventAttributes?.failure?.message ??
        event.activityTaskTimedOutEventAttributes?.failure?.message ??
        event.workflowTaskFailedEventAttributes?.failure?.message ??
        event.workflowTaskTimedOutEventAttributes?.timeoutType;
      if (failure !== undefined && failure !== null) lines.push(`  event ${event.eventId}: ${String(failure).slice(0, 300)}`);
    }
    lines.push(`  history: ${history.events?.length ?? 0} events, last ${history.events?.at(-1)?.eventType}`);
  } catch (error) {
    lines.push(`diagnosis failed: ${String(error)}`);
  }
  return lines.join('\n');
}
