/**
 * The watchers' bookkeeping of an outage and of how a run ended (no server here: the outage
 * behaviour against a real server is test/cli/outage.test.ts).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ServerUnreachableError } from '../../src/cli/client';
import { EXIT } from '../../src/cli/exitCodes';
import { OutageTracker, outcomeExitCode, outcomeLine } from '../../src/cli/watch';
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

  it('a failed run workflow: FAILED with the reason, exit 3', () => {
    const outcome = { kind: 'failed', message: 'Workflow execution failed: boom' } as const;
    expect(outcomeLine('r', outcome)).toBe("run 'r' FAILED: Workflow execution failed: boom");
    expect(outcomeExitCode(outcome)).toBe(EXIT.runFailed);
  });
});
