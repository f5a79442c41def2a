/**
 * The watchers' bookkeeping of an outage and of how a run ended, and a query to a port where no
 * server listens (the outage behaviour against a real server is test/cli/outage.test.ts).
 */
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, RetryState, TerminatedFailure } from '@temporalio/common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { queryStatus, ServerUnreachableError, watchClient } from '../../src/cli/client';
import { EXIT } from '../../src/cli/exitCodes';
import { failedRunMessage, OutageTracker, outcomeExitCode, outcomeLine, retryThroughOutage } from '../../src/cli/watch';
import { freePort } from '../../src/process/ports';
import type { RunSummary } from '../../src/workflows/run';

describe('OutageTracker', () => {
  afterEach(() => vi.useRealTimers());

  it('says once that the server is unreachable, once that it is back, and gives up past the limit with exit 4', () => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
    const lines: string[] = [];
    const tracker = new OutageTracker('127.0.0.1:7233', { limitMs: 10_000, log: (line) => lines.push(line) });
    tracker.failed(new Error('14 UNAVAILABLE: No connection established'));
    vi.setSystemTime(5_000);
    tracker.failed(new Error('14 UNAVAILABLE'));
    expect(lines).toEqual(['  server unreachable at 127.0.0.1:7233, retrying for up to 10 s (--server-wait): 14 UNAVAILABLE: No connection established']);
    tracker.reachable();
    expect(lines[1]).toBe('  server reachable again after 5 s');
    // A new outage starts its own clock.
    vi.setSystemTime(20_000);
    tracker.failed(new Error('down again'));
    vi.setSystemTime(29_999);
    tracker.failed(new Error('down again'));
    vi.setSystemTime(30_000);
    let thrown: unknown;
    try {
      tracker.failed(new Error('still down'));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ServerUnreachableError);
    expect((thrown as ServerUnreachableError).exitCode).toBe(EXIT.serverUnreachable);
    expect((thrown as Error).message).toMatch(/^gave up: the Temporal server at 127\.0\.0\.1:7233 has not answered for 10 s \(--server-wait 10\): still down/);
    expect((thrown as Error).message).not.toContain('FAILED');
  });

  it('counts an outage from the start of the attempt that failed, not from when its failure came', () => {
    vi.useFakeTimers();
    vi.setSystemTime(13_000);
    const lines: string[] = [];
    const tracker = new OutageTracker('h:1', { limitMs: 5_000, log: (line) => lines.push(line) });
    // A call begun at 0 that failed at 13 s: the server has not answered for 13 s.
    tracker.failed(new Error('14 UNAVAILABLE'), 0);
    expect(lines).toHaveLength(1);
    vi.setSystemTime(14_000);
    expect(() => tracker.failed(new Error('14 UNAVAILABLE'), 13_500)).toThrow(/has not answered for 14 s \(--server-wait 5\)/);
  });

  it('with a zero limit gives up at the first failure, without a retry line', () => {
    const lines: string[] = [];
    const tracker = new OutageTracker('h:1', { limitMs: 0, log: (line) => lines.push(line) });
    const unreachable = new ServerUnreachableError('cannot reach the Temporal server at h:1');
    expect(() => tracker.failed(unreachable)).toThrow(unreachable);
    expect(() => tracker.failed(new Error('x'))).toThrow(ServerUnreachableError);
    expect(lines).toEqual([]);
  });
});

describe('how a run ended', () => {
  const samples: RunSummary['samples'] = { admitted: 24, trained: 16, running: 0, completedWaiting: 8, waiting: 0, dropped: { stale: 0 } };

  it('a completed run: its summary, exit 0', () => {
    const outcome = { kind: 'completed', summary: { runId: 'r', iterations: 2, version: 2, stopped: false, samples } } as const;
    expect(outcomeLine('r', outcome)).toBe(`run 'r' finished: 2 iterations, weights v2, 16 samples trained, dropped {"stale":0}`);
    expect(outcomeExitCode(outcome)).toBe(EXIT.ok);
  });

  it('a stopped run: said so, exit 0', () => {
    const outcome = { kind: 'completed', summary: { runId: 'r', iterations: 29, version: 29, stopped: true, samples } } as const;
    expect(outcomeLine('r', outcome)).toBe(`run 'r' stopped by the operator after 29 iterations, weights v29, 16 samples trained, dropped {"stale":0}`);
    expect(outcomeExitCode(outcome)).toBe(EXIT.ok);
  });

  it('a failed run workflow: FAILED with the reason, exit 3', () => {
    const outcome = { kind: 'failed', message: 'Workflow execution failed: boom' } as const;
    expect(outcomeLine('r', outcome)).toBe("run 'r' FAILED: Workflow execution failed: boom");
    expect(outcomeExitCode(outcome)).toBe(EXIT.runFailed);
  });

  it('a terminated run says it was terminated, with the reason once (the client puts it in the error and in its cause)', () => {
    const terminated = (reason: string) => new WorkflowFailedError(reason, new TerminatedFailure(reason), RetryState.NON_RETRYABLE_FAILURE);
    expect(failedRunMessage(terminated('given up by the operator'))).toBe('Workflow execution terminated: given up by the operator');
    // No reason given: the client's own words, once.
    expect(failedRunMessage(terminated('Workflow execution terminated'))).toBe('Workflow execution terminated');
    const failed = new WorkflowFailedError('Workflow execution failed', ApplicationFailure.create({ message: 'boom' }), RetryState.NON_RETRYABLE_FAILURE);
    expect(failedRunMessage(failed)).toBe('Workflow execution failed: boom');
  });
});

describe('a server that stops answering', () => {
  it("the watcher's status query fails at once where no server listens (no retries held to the deadline) and is told as an outage", async () => {
    // Through the SDK's retrying connection this query would wait out its 10 s deadline
    // (DEADLINE_EXCEEDED); the watcher's own connection is refused at once.
    const address = `127.0.0.1:${await freePort()}`;
    const watch = watchClient({ address, namespace: 'default' });
    const tracker = new OutageTracker(address, { limitMs: 0, log: () => undefined });
    try {
      const error = await retryThroughOutage(watch, tracker, () => watch.client.withDeadline(Date.now() + 10_000, () => queryStatus(watch.client, 'r'))).then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(ServerUnreachableError);
      expect((error as Error).message).toMatch(/^gave up: the Temporal server at 127\.0\.0\.1:\d+ has not answered for \d+ s \(--server-wait 0\): .*14 UNAVAILABLE/);
      expect((error as Error).message).not.toContain('DEADLINE_EXCEEDED');
      expect(await watch.unanswered()).toBeInstanceOf(Error);
    } finally {
      await watch.close();
    }
  });
});
