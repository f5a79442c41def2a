import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressLine, statusBlock } from '../../src/cli/progress';
import { runWorkflowId } from '../../src/contract/naming';
import type { IterationProgress, RunStatus } from '../../src/contract/types';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import { parseIterationProgress, queryRunStatus, withIterationProgress } from '../../src/temporal/runStatus';

const runStatus: RunStatus = {
  runId: 'r',
  strategy: 'multiplexed',
  iteration: 2,
  iterationsTotal: 5,
  phase: 'starting',
  version: 2,
  paused: false,
  pauseRequested: false,
  stopRequested: false,
  pool: undefined,
  samples: { admitted: 40, trained: 16, dropped: {}, running: 0, completedWaiting: 3, waiting: 5 },
  batchSize: 8,
  shrinkOverride: undefined,
  lastIteration: undefined,
  lastError: undefined,
  iterationWorkflowId: 'timeshare-r-iter-2',
};

const progress = (phase: IterationProgress['phase'], iteration = 2): IterationProgress => ({
  iteration,
  phase,
  pool: { roles: ['training', 'training', 'rollout', 'rollout'], rankPhases: ['released', 'released', 'serving', 'serving'] },
  version: phase === 'train' ? 2 : 3,
  samplesRunning: 6,
  samplesCompleted: 1,
  samplesWaiting: 0,
  batchSamples: 8,
});

describe('run status with the running iteration progress', () => {
  it('takes phase, version, pool and live counts from the iteration; counts its batch trained once the step is done', () => {
    const training = withIterationProgress(runStatus, progress('train'));
    expect(training).toMatchObject({ phase: 'train', version: 2, pool: progress('train').pool });
    expect(training.samples).toEqual({ admitted: 40, trained: 16, dropped: {}, running: 6, completedWaiting: 1, waiting: 0 });
    for (const phase of ['stop', 'sync', 'expand', 'done'] as const) {
      expect(withIterationProgress(runStatus, progress(phase)).samples.trained, phase).toBe(24);
    }
  });

  it("names the iteration's attempt when its progress does, and says so where it is a retry", () => {
    expect(withIterationProgress(runStatus, progress('train')).iterationAttempt).toBeUndefined();
    const first = withIterationProgress(runStatus, { ...progress('train'), attempt: 1 });
    expect(first.iterationAttempt).toBe(1);
    expect(statusBlock(first)).toMatch(/^iteration: +3 of 5$/m);
    const retried = withIterationProgress(runStatus, { ...progress('rollout'), attempt: 2 });
    expect(retried.iterationAttempt).toBe(2);
    expect(statusBlock(retried)).toMatch(/^iteration: +3 of 5 \(attempt 2\)$/m);
    expect(progressLine(retried, undefined)).toMatch(/^iter 3\/5 \(attempt 2\) \| rollout \|/);
    expect(() => parseIterationProgress('w', { ...progress('sync'), attempt: 0 })).toThrow(/malformed answer: attempt/);
  });

  it("leaves the run's status as it is before the first report or for another iteration's report", () => {
    expect(withIterationProgress(runStatus, null)).toEqual(runStatus);
    expect(withIterationProgress(runStatus, progress('train', 1))).toEqual(runStatus);
  });

  it('rejects a malformed answer with the workflow named', () => {
    expect(parseIterationProgress('w', null)).toBeNull();
    expect(parseIterationProgress('w', progress('sync'))).toEqual(progress('sync'));
    expect(() => parseIterationProgress('timeshare-r-iter-2', { ...progress('sync'), phase: 'lunch' })).toThrow(/progress query of timeshare-r-iter-2: malformed answer: phase/);
    expect(() => parseIterationProgress('w', { ...progress('sync'), extra: 1 })).toThrow(/malformed answer/);
  });
});

describe('queryRunStatus against a real dev server', () => {
  let server: DevServer;
  let worker: Worker;
  let connection: NativeConnection;
  let client: Client;
  let running: Promise<void>;
  const taskQueue = 'status-merge';

  beforeAll(async () => {
    server = await startDevServer({ headless: true });
    connection = await NativeConnection.connect({ address: server.address });
    worker = await Worker.create({ connection, taskQueue, workflowsPath: path.join(__dirname, '..', 'fixtures', 'statusWorkflows.ts') });
    running = worker.run();
    client = new Client({ connection: await Connection.connect({ address: server.address }) });
  }, 120_000);

  afterAll(async () => {
    worker?.shutdown();
    await running;
    await client?.connection.close();
    await connection?.close();
    await server?.stop();
  });

  async function statusWithIteration(iterationType: string, runId: string): Promise<RunStatus> {
    const iterationId = `${runId}-iter`;
    await client.workflow.start(iterationType, { taskQueue, workflowId: iterationId });
    await client.workflow.start('namesIterationWorkflow', { taskQueue, workflowId: runWorkflowId(runId), args: [iterationId] });
    return queryRunStatus(client, runId);
  }

  it("returns the run's status, saying why, when the iteration's progress query fails or answers badly", async () => {
    const failing = await statusWithIteration('failingProgressWorkflow', 'progress-fails');
    expect(failing.samples.trained).toBe(8);
    expect(failing.progressUnavailable).toMatch(/progress query of progress-fails-iter failed: .*progress is not readable now/);
    const malformed = await statusWithIteration('malformedProgressWorkflow', 'progress-malformed');
    expect(malformed.phase).toBe('starting');
    expect(malformed.progressUnavailable).toMatch(/malformed answer: phase/);
    expect(statusBlock(malformed)).toMatch(/progress: +unavailable .*malformed answer/);
  }, 120_000);

  it('leaves the status as it is while the iteration is not known to the server yet', async () => {
    await client.workflow.start('namesIterationWorkflow', { taskQueue, workflowId: runWorkflowId('not-started'), args: ['not-started-iter'] });
    const status = await queryRunStatus(client, 'not-started');
    expect(status.progressUnavailable).toBeUndefined();
    expect(status.iterationWorkflowId).toBe('not-started-iter');
  }, 60_000);
});
