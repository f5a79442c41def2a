/**
 * Watching a run through server outages (`dev`, `start --watch`, `status`). A call that fails
 * because the Temporal server does not answer is not the run failing: the watcher says the server
 * is unreachable, keeps trying for up to --server-wait seconds, and gives up with its own exit
 * code (EXIT.serverUnreachable). A run is reported as failed only when its workflow closed as
 * failed, terminated, cancelled or timed out.
 */
import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { TerminatedFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { describeError } from '../contract/errors';
import { runWorkflowId } from '../contract/naming';
import type { RunStatus } from '../contract/types';
import type { RunSummary } from '../workflows/run';
import { checkNamespace, CliError, queryStatus, runResult, serverUnreachable, ServerUnreachableError, statusUnavailable, watchClient, type WatchClient } from './client';
import { STATUS_SERVER_WAIT_SECONDS, WATCH_SERVER_WAIT_SECONDS } from './defaults';
import { EXIT } from './exitCodes';
import { pauseHint, progressLine } from './progress';
import type { TemporalTarget } from '../workers/options';

export interface ServerWait {
  /** How long an outage may last before the watcher gives up (0: give up at the first failure). */
  limitMs: number;
  log: (line: string) => void;
}

export { STATUS_SERVER_WAIT_SECONDS, WATCH_SERVER_WAIT_SECONDS };

const RETRY_EVERY_MS = 1_000;
/** A status query that takes longer than this counts as no answer. */
const QUERY_TIMEOUT_MS = 10_000;
/** A worker long-polls its queue for about a minute at a time: one not seen for longer is gone. */
const RECENT_POLL_MS = 90_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const firstLine = (error: unknown): string => describeError(error).split('\n')[0] ?? '';

/** One outage at a time: its first failure and its end are each told in one line. */
export class OutageTracker {
  private since: number | undefined;

  constructor(
    private readonly address: string,
    private readonly wait: ServerWait,
  ) {}

  /**
   * Records a failed contact, begun at `attemptStartedMs` (the outage is counted from there: the
   * server was not known to be down before); throws ServerUnreachableError once it has lasted past
   * the limit.
   */
  failed(error: unknown, attemptStartedMs = Date.now()): void {
    const now = Date.now();
    if (this.since === undefined) {
      if (this.wait.limitMs === 0) throw error instanceof ServerUnreachableError ? error : this.giveUp(0, error);
      this.since = Math.min(attemptStartedMs, now);
      this.wait.log(`  server unreachable at ${this.address}, retrying for up to ${Math.round(this.wait.limitMs / 1000)} s (--server-wait): ${firstLine(error)}`);
      return;
    }
    if (now - this.since >= this.wait.limitMs) throw this.giveUp(now - this.since, error);
  }

  reachable(): void {
    if (this.since === undefined) return;
    this.wait.log(`  server reachable again after ${((Date.now() - this.since) / 1000).toFixed(0)} s`);
    this.since = undefined;
  }

  private giveUp(elapsedMs: number, error: unknown): ServerUnreachableError {
    return new ServerUnreachableError(
      `gave up: the Temporal server at ${this.address} has not answered for ${(elapsedMs / 1000).toFixed(0)} s (--server-wait ${Math.round(this.wait.limitMs / 1000)}): ${firstLine(error)}\n` +
        `  The run itself may still be going on; look again once the server is back.`,
    );
  }
}

/**
 * Whether `error`, from a call begun at `startedMs`, came while the server does not answer: then
 * it is recorded as an outage (the tracker throws past the limit) and true; false when the server
 * answers (the call's own error).
 */
async function recordIfOutage(error: unknown, startedMs: number, watch: WatchClient, tracker: OutageTracker): Promise<boolean> {
  if ((await watch.unanswered()) === undefined) return false;
  tracker.failed(error, startedMs);
  return true;
}

/** A status query through the watcher's client (no retries inside: it fails at once on a stopped server). */
function queryOnce(watch: WatchClient, runId: string): Promise<RunStatus> {
  return watch.client.withDeadline(Date.now() + QUERY_TIMEOUT_MS, () => queryStatus(watch.client, runId));
}

/**
 * Runs `operation` until it succeeds. A failure while the server does not answer is an outage
 * (retried, within the limit); a failure while it answers is the operation's own error, rethrown.
 */
export async function retryThroughOutage<T>(watch: WatchClient, tracker: OutageTracker, operation: () => Promise<T>): Promise<T> {
  for (;;) {
    const startedMs = Date.now();
    try {
      const value = await operation();
      tracker.reachable();
      return value;
    } catch (error) {
      if (error instanceof CliError || !(await recordIfOutage(error, startedMs, watch, tracker))) throw error;
      await sleep(RETRY_EVERY_MS);
    }
  }
}

/** Waits out a server that does not answer yet (or any more), then checks the namespace. */
export async function awaitServerThroughOutage(target: TemporalTarget, watch: WatchClient, tracker: OutageTracker): Promise<void> {
  for (;;) {
    const startedMs = Date.now();
    const reason = await watch.unanswered();
    if (reason === undefined) break;
    tracker.failed(serverUnreachable(target, reason), startedMs);
    await sleep(RETRY_EVERY_MS);
  }
  tracker.reachable();
  await checkNamespace(watch.client.connection, target);
}

/** What `timeshare status` reports: the run's status when its workers answer, and how it ended once it has. */
export interface StatusReport {
  /** The status query's answer; absent for an ended run whose workers are gone (the query needs one to replay). */
  status?: RunStatus;
  /** How the run ended, from its workflow's close event (no worker needed); absent while it runs. */
  outcome?: RunOutcome;
}

/**
 * Whether the run workflow (the latest execution of its chain) has closed, and if so whether a
 * worker polls its task queue (a query needs one to replay it); a run that never existed is a CliError.
 */
async function runEnded(watch: WatchClient, runId: string): Promise<{ ended: boolean; polled: boolean }> {
  try {
    const description = await watch.client.withDeadline(Date.now() + QUERY_TIMEOUT_MS, () => watch.client.workflow.getHandle(runWorkflowId(runId)).describe());
    if (description.status.name === 'RUNNING') return { ended: false, polled: true };
    const queue = await watch.client.withDeadline(Date.now() + QUERY_TIMEOUT_MS, () =>
      watch.client.workflowService.describeTaskQueue({
        namespace: watch.client.options.namespace,
        taskQueue: { name: description.taskQueue },
        taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
      }),
    );
    // The server lists a poller for minutes after its worker is gone: only one seen lately polls.
    const lately = Date.now() - RECENT_POLL_MS;
    const polled = (queue.pollers ?? []).some((poller) => {
      const seconds = poller.lastAccessTime?.seconds;
      return seconds !== undefined && seconds !== null && Number(seconds) * 1000 >= lately;
    });
    return { ended: true, polled };
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new CliError(`no run '${runId}' (workflow ${runWorkflowId(runId)}) on this server`);
    throw error;
  }
}

/**
 * `timeshare status`: the run's status, waiting out an outage. An ended run also gets its outcome;
 * when no worker answers the status query for it (the workers of a finished `dev` are gone), the
 * outcome alone, instead of the query's "no poller" error.
 */
export async function statusThroughOutage(target: TemporalTarget, runId: string, wait: ServerWait): Promise<StatusReport> {
  const tracker = new OutageTracker(target.address, wait);
  const watch = watchClient(target);
  try {
    await awaitServerThroughOutage(target, watch, tracker);
    const { ended, polled } = await retryThroughOutage(watch, tracker, () => runEnded(watch, runId));
    if (!ended) return { status: await retryThroughOutage(watch, tracker, () => queryOnce(watch, runId)) };
    let status: RunStatus | undefined;
    // Without a worker the query would wait out its whole timeout for nothing.
    if (polled) {
      try {
        status = await retryThroughOutage(watch, tracker, () => queryOnce(watch, runId));
      } catch (error) {
        if (error instanceof CliError) throw error;
        // Its workers may be gone since: the outcome below is what is left to tell, and this is why there is no more.
        wait.log(`  (no status for the ended run: ${firstLine(error)})`);
      }
    }
    const outcome = await runOutcome(watch, runId, tracker);
    return status === undefined ? { outcome } : { status, outcome };
  } catch (error) {
    throw statusUnavailable(runId, error);
  } finally {
    await watch.close();
  }
}

/** The client's words for a termination without a reason. */
const TERMINATED = 'Workflow execution terminated';

/**
 * Why the run workflow closed unsuccessfully, on one line. A termination is named as such: the
 * client gives its reason as the error's message and again as its cause's, and the word
 * "terminated" in neither.
 */
export function failedRunMessage(error: WorkflowFailedError): string {
  if (error.cause instanceof TerminatedFailure) {
    const reason = error.cause.message;
    return reason === '' || reason === TERMINATED ? TERMINATED : `${TERMINATED}: ${reason}`;
  }
  return describeError(error);
}

export type RunOutcome = { kind: 'completed'; summary: RunSummary } | { kind: 'failed'; message: string };

/** How the run ended, from its workflow's close event (no worker needed); outages are waited out, other errors rethrown. */
export async function runOutcome(watch: WatchClient, runId: string, tracker: OutageTracker): Promise<RunOutcome> {
  // The server answering while the result cannot be read: retried a few times (a long poll cut by
  // a restart), then reported as what it is.
  let failuresWhileAnswering = 0;
  for (;;) {
    try {
      const summary = await runResult(watch.client, runId);
      tracker.reachable();
      return { kind: 'completed', summary };
    } catch (error) {
      if (error instanceof WorkflowFailedError) return { kind: 'failed', message: failedRunMessage(error) };
      if (error instanceof WorkflowNotFoundError) throw new CliError(`no run '${runId}' (workflow ${runWorkflowId(runId)}) on this server`);
      // Counted from now, not from the call's start: the call is a long poll begun with the run.
      if (await recordIfOutage(error, Date.now(), watch, tracker)) {
        failuresWhileAnswering = 0;
      } else {
        failuresWhileAnswering += 1;
        if (failuresWhileAnswering >= 3) throw new CliError(`could not read how run '${runId}' ended: ${describeError(error)}`);
      }
      await sleep(RETRY_EVERY_MS);
    }
  }
}

export function outcomeLine(runId: string, outcome: RunOutcome): string {
  if (outcome.kind === 'failed') return `run '${runId}' FAILED: ${outcome.message}`;
  const { summary } = outcome;
  // A stopped run ended before its configured iterations, as the operator asked: said so.
  const ended = summary.stopped ? 'stopped by the operator after' : 'finished:';
  return `run '${runId}' ${ended} ${summary.iterations} iterations, weights v${summary.version}, ${summary.samples.trained} samples trained, dropped ${JSON.stringify(summary.samples.dropped)}`;
}

export function outcomeExitCode(outcome: RunOutcome): number {
  return outcome.kind === 'completed' ? EXIT.ok : EXIT.runFailed;
}

export interface WatchOptions {
  address: string;
  /** Seconds between progress lines when nothing changes. */
  everySeconds: number;
  serverWait: ServerWait;
  log: (line: string) => void;
  interrupted: () => boolean;
  /** Rejects when something the watcher depends on is gone for good (dev: its server could not be restarted). */
  abandoned?: Promise<never>;
}

/**
 * Prints a progress line on every change (and every `everySeconds`) until the run ends; returns
 * how it ended, or undefined when interrupted. Throws ServerUnreachableError past the wait limit.
 */
export async function watchRun(watch: WatchClient, runId: string, options: WatchOptions): Promise<RunOutcome | undefined> {
  const { log } = options;
  // Once interrupted, the caller stops what it owns (a dev's server among it): the outcome's
  // watch, still waiting on the server, has nothing to report of that.
  const serverWait = {
    ...options.serverWait,
    log: (line: string) => {
      if (!options.interrupted()) options.serverWait.log(line);
    },
  };
  const tracker = new OutageTracker(options.address, serverWait);
  let outcome: RunOutcome | undefined;
  let failure: unknown;
  let failed = false;
  const settle = (promise: Promise<unknown>) =>
    promise.catch((error: unknown) => {
      failure ??= error;
      failed = true;
    });
  const ended = settle(runOutcome(watch, runId, tracker).then((value) => (outcome = value)));
  if (options.abandoned !== undefined) void settle(options.abandoned);

  let lastKey = '';
  let lastPrint = 0;
  let saidUnavailable = false;
  let firstTrained: { at: number; trained: number } | undefined;
  while (outcome === undefined && !failed && !options.interrupted()) {
    const startedMs = Date.now();
    try {
      const status = await queryOnce(watch, runId);
      tracker.reachable();
      saidUnavailable = false;
      const now = Date.now();
      firstTrained ??= { at: now, trained: status.samples.trained };
      const elapsed = (now - firstTrained.at) / 1000;
      const rate = elapsed > 1 && status.samples.trained > firstTrained.trained ? (status.samples.trained - firstTrained.trained) / elapsed : undefined;
      const key = `${status.iteration}/${status.phase}/${status.paused}`;
      if (key !== lastKey || now - lastPrint >= options.everySeconds * 1000) {
        log(progressLine(status, rate));
        if (status.lastError !== undefined && key !== lastKey) log(`  last error: ${status.lastError}`);
        const hint = key !== lastKey ? pauseHint(status) : undefined;
        if (hint !== undefined) log(hint);
        lastKey = key;
        lastPrint = now;
      }
    } catch (error) {
      if (outcome !== undefined || failed) break;
      if (error instanceof CliError) throw error;
      if (!(await recordIfOutage(error, startedMs, watch, tracker))) {
        // The server answers but the query does not (no orchestrator worker polling yet, or one
        // restarting): said once until a status comes through.
        if (!saidUnavailable) log(`  (status unavailable until the orchestrator worker answers: ${firstLine(error)})`);
        saidUnavailable = true;
      }
    }
    await Promise.race([ended, sleep(500)]);
  }
  if (failed) throw failure;
  if (outcome === undefined && options.interrupted()) return undefined;
  await ended;
  if (failed) throw failure;
  return outcome;
}
