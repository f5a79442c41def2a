/**
 * Client-side operations on runs, shared by the CLI and the tests: connect (with an error that
 * says what to do when the server is unreachable), start or attach to a run, query, update.
 */
import { Client, Connection, WorkflowNotFoundError, WorkflowUpdateFailedError, type ConnectionLike } from '@temporalio/client';
import type { RunSpec, RunStatus } from '../contract/types';
import { orchestratorQueue, runWorkflowId } from '../contract/naming';
import { ITERATION_KEY, PHASE_KEY, RUN_ID_KEY, STRATEGY_KEY } from '../temporal/searchAttributes';
import { queryRunStatus } from '../temporal/runStatus';
import { connectionOptions, dataConverter, PLAINTEXT } from '../temporal/security';
import type { TemporalTarget } from '../workers/options';
import { EXIT } from './exitCodes';
import { CliError, ServerUnreachableError } from './errors';
import type { RunInput, RunSummary } from '../workflows/run';
import { pauseUpdate, resumeUpdate, returnRanksUpdate, setBatchSizeUpdate, setShrinkSetUpdate, stopUpdate } from '../workflows/signals';

export { CliError, ServerUnreachableError };

export async function connectClient(target: TemporalTarget, timeoutMs = 5_000): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: target.address, connectTimeout: timeoutMs, ...connectionOptions(target.security ?? PLAINTEXT) });
    await connection.workflowService.getSystemInfo({});
  } catch (error) {
    throw serverUnreachable(target, error);
  }
  try {
    await checkNamespace(connection, target);
  } catch (error) {
    await connection.close();
    throw error;
  }
  return clientOn(connection, target);
}

/** The server at `target` did not answer: what failed, and what to check. */
export function serverUnreachable(target: TemporalTarget, error: unknown): ServerUnreachableError {
  // gRPC appends "Resolution note: <note>" to a connection error, with nothing after it when there is no note.
  const reason = (error instanceof Error ? error.message : String(error)).replace(/\s*Resolution note:\s*$/, '');
  return new ServerUnreachableError(
    `cannot reach the Temporal server at ${target.address} (${(target.security ?? PLAINTEXT).summary}): ${reason}\n` +
      `  Is it running? 'timeshare dev' starts a local one; otherwise pass --address host:port (and --namespace).`,
  );
}

/** Throws a CliError when the server does not know the target's namespace. */
export async function checkNamespace(connection: ConnectionLike, target: TemporalTarget): Promise<void> {
  try {
    await connection.workflowService.describeNamespace({ namespace: target.namespace });
  } catch (error) {
    throw new CliError(`namespace '${target.namespace}' not found on ${target.address}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * What the watchers (src/cli/watch.ts) call the server with: a client on a connection of its own,
 * without the SDK's retry interceptor, and a probe on it. Through a retrying connection a call to
 * a stopped server is retried until its deadline (a 10 s status query answered after 14 s), and a
 * retry still pending when the connection closes throws from its timer; through this one it fails
 * at once (connection refused) and the watcher retries on its own schedule.
 */
export interface WatchClient {
  client: Client;
  /** Whether the server answers a system-info call within `timeoutMs`: undefined when it did, else why not. */
  unanswered(): Promise<Error | undefined>;
  close(): Promise<void>;
}

export function watchClient(target: TemporalTarget, timeoutMs = 3_000): WatchClient {
  const security = target.security ?? PLAINTEXT;
  const connection = Connection.lazy({ address: target.address, ...connectionOptions(security), interceptors: [] });
  return {
    client: clientOn(connection, target),
    async unanswered() {
      try {
        await connection.withDeadline(Date.now() + timeoutMs, () => connection.workflowService.getSystemInfo({}));
        return undefined;
      } catch (error) {
        return error instanceof Error ? error : new Error(String(error));
      }
    },
    close: () => connection.close(),
  };
}

function clientOn(connection: Connection, target: TemporalTarget): Client {
  const converter = dataConverter(target.security ?? PLAINTEXT);
  return new Client({ connection, namespace: target.namespace, ...(converter === undefined ? {} : { dataConverter: converter }) });
}

export type StartOutcome = { kind: 'started' } | { kind: 'attached' } | { kind: 'finished'; status: string };

/**
 * Starts the run workflow, or attaches to it if it is already running (a resumed `dev`).
 * A run whose workflow already closed is never started again under the same id: that would
 * repeat its iterations.
 */
export async function startOrAttachRun(client: Client, spec: RunSpec): Promise<StartOutcome> {
  const workflowId = runWorkflowId(spec.runId);
  try {
    const description = await client.workflow.getHandle(workflowId).describe();
    if (description.status.name === 'RUNNING') return { kind: 'attached' };
    return { kind: 'finished', status: description.status.name };
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) throw error;
  }
  const input: RunInput = { spec };
  await client.workflow.start('runWorkflow', {
    workflowId,
    taskQueue: orchestratorQueue(spec.taskQueuePrefix),
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'REJECT_DUPLICATE',
    typedSearchAttributes: [
      { key: RUN_ID_KEY, value: spec.runId },
      { key: STRATEGY_KEY, value: spec.layout.strategy },
      { key: ITERATION_KEY, value: 0 },
      { key: PHASE_KEY, value: 'starting' },
    ],
  }).catch((error: unknown) => {
    throw missingSearchAttributes(error) ?? error;
  });
  return { kind: 'started' };
}

/**
 * A plain server has no custom search attributes until they are registered; the client's own
 * message ("Failed to start Workflow") hides the server's reason in its cause.
 */
function missingSearchAttributes(error: unknown): CliError | undefined {
  const message = plainMessage(error);
  if (!/no mapping defined for search attribute/i.test(message)) return undefined;
  return new CliError(`${message}\n  Register the run's search attributes on this namespace once (deploy/README.md, "Any other cluster: what a plain server needs").`);
}

export async function queryStatus(client: Client, runId: string): Promise<RunStatus> {
  try {
    return await queryRunStatus(client, runId);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new CliError(`no run '${runId}' (workflow ${runWorkflowId(runId)}) on this server`);
    // Not a CliError: the watchers tell an outage (waited out) from a query the workers could not answer.
    throw error;
  }
}

/** The run's status, or undefined once it has ended (a stop just took effect): nothing runs to report on. */
export async function statusWhileRunning(client: Client, runId: string): Promise<RunStatus | undefined> {
  try {
    return await queryStatus(client, runId);
  } catch (error) {
    const description = await client.workflow.getHandle(runWorkflowId(runId)).describe();
    if (description.status.name !== 'RUNNING') return undefined;
    throw error;
  }
}

/**
 * A status query the server answered but could not satisfy (no worker polling, a workflow task
 * failing): one plain line with the reason, not the client's stack.
 */
export function statusUnavailable(runId: string, error: unknown): CliError {
  return error instanceof CliError ? error : new CliError(`status of run '${runId}' unavailable: ${plainMessage(error)}`);
}

/** The message of an error and of its causes, on one line. */
function plainMessage(error: unknown): string {
  const parts: string[] = [];
  for (let current: unknown = error; current instanceof Error && parts.length < 4; current = current.cause) {
    if (!parts.some((part) => part.includes(current instanceof Error ? current.message : ''))) parts.push(current.message);
  }
  return (parts.length > 0 ? parts.join(': ') : String(error)).replace(/\s*\n\s*/g, ' ');
}

/**
 * Why an update found no workflow: the run never existed, or it is finished (a closed workflow
 * takes no updates, and the server answers "not found" for it too).
 */
async function missingRun(client: Client, runId: string, update: string): Promise<{ error: CliError; finished: boolean }> {
  try {
    const description = await client.workflow.getHandle(runWorkflowId(runId)).describe();
    if (description.status.name !== 'RUNNING') {
      const message = `run '${runId}' is finished (${description.status.name.toLowerCase()}): nothing to ${update}; 'timeshare status ${runId}' shows how it ended`;
      return { error: new CliError(message), finished: true };
    }
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) return { error: new CliError(`${update}: run '${runId}' not reachable: ${plainMessage(error)}`), finished: false };
  }
  return { error: new CliError(`no run '${runId}' (workflow ${runWorkflowId(runId)}) on this server`), finished: false };
}

export async function runResult(client: Client, runId: string): Promise<RunSummary> {
  return client.workflow.getHandle(runWorkflowId(runId)).result() as Promise<RunSummary>;
}

/** The operator's updates, with their argument types (validated again inside the workflow). */
export type RunUpdate =
  | { name: 'pause' | 'resume' | 'stop' }
  | { name: 'setBatchSize'; batchSize: number }
  | { name: 'setShrinkSet'; ranks: number[] | null }
  | { name: 'returnRanks'; ranks: number[] };

/** What an accepted update does, said in one line. */
export function updateConfirmation(runId: string, update: RunUpdate): string {
  switch (update.name) {
    case 'pause':
      return `pause accepted: run '${runId}' pauses after its current iteration`;
    case 'resume':
      return `resume accepted: run '${runId}' goes on`;
    case 'stop':
      return `stop accepted: run '${runId}' stops after its current iteration`;
    case 'setBatchSize':
      return `set-batch-size accepted: run '${runId}' trains batches of ${update.batchSize} from its next iteration on`;
    case 'setShrinkSet':
      return `set-shrink-set accepted: run '${runId}' releases ${update.ranks === null ? "the layout's ranks" : `ranks ${update.ranks.join(',')}`} from its next iteration on`;
    case 'returnRanks':
      return `return-ranks accepted: ranks ${update.ranks.join(',')} of run '${runId}' rejoin at its next iteration`;
  }
}

/** The validator's answer to a repeated stop: the run does what was asked already. */
const ALREADY_STOPPING = 'the run is already stopping';

/**
 * Sends an update and says what it does; a rejection by the workflow's validator becomes a
 * CliError with its reason, except a stop of a run already stopping or ended, which is what was
 * asked (so a script may repeat it).
 */
export async function sendUpdate(client: Client, runId: string, update: RunUpdate): Promise<string> {
  const handle = client.workflow.getHandle(runWorkflowId(runId));
  try {
    switch (update.name) {
      case 'pause':
        await handle.executeUpdate(pauseUpdate);
        break;
      case 'resume':
        await handle.executeUpdate(resumeUpdate);
        break;
      case 'stop':
        await handle.executeUpdate(stopUpdate);
        break;
      case 'setBatchSize':
        await handle.executeUpdate(setBatchSizeUpdate, { args: [{ batchSize: update.batchSize }] });
        break;
      case 'setShrinkSet':
        await handle.executeUpdate(setShrinkSetUpdate, { args: [{ ranks: update.ranks }] });
        break;
      case 'returnRanks':
        await handle.executeUpdate(returnRanksUpdate, { args: [{ ranks: update.ranks }] });
        break;
    }
    return updateConfirmation(runId, update);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) {
      const missing = await missingRun(client, runId, update.name);
      // A stop of a run that has ended leaves it as asked: not running.
      if (update.name === 'stop' && missing.finished) return missing.error.message;
      throw missing.error;
    }
    if (error instanceof WorkflowUpdateFailedError) {
      const reason = plainMessage(error);
      if (update.name === 'stop' && reason.includes(ALREADY_STOPPING)) return `run '${runId}' is already stopping (a stop was accepted before)`;
      // Refused by the workflow's validator: the argument was wrong (exit 2, as for bad arguments).
      throw new CliError(`${update.name} rejected: ${reason}`, EXIT.usage);
    }
    throw new CliError(`${update.name} failed: ${plainMessage(error)}`);
  }
}
