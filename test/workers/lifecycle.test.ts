/**
 * Creating workers all or none (src/workers/lifecycle.ts), against a real dev server: where one
 * creation fails, the workers already created let go of the connection, so the caller sees the
 * first failure and can close the connection (a worker created and never run holds it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import { createAllOrNone, disposeUnstarted } from '../../src/workers/lifecycle';
import { installWorkerRuntime } from '../../src/workers/telemetry';

const HELD = /Cannot close connection while Workers hold a reference to it/;

describe('creating workers all or none (real dev server)', () => {
  let server: DevServer;
  let dir: string;
  beforeAll(async () => {
    installWorkerRuntime({ logLevel: 'WARN' });
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-worker-lifecycle-'));
    server = await startDevServer({ headless: true, logFile: path.join(dir, 'temporal.log') });
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const activityWorker = (connection: NativeConnection, taskQueue: string) => Worker.create({ connection, taskQueue, activities: { noop: async () => undefined } });

  it('a worker created and never run holds its connection until it is disposed of', async () => {
    const connection = await NativeConnection.connect({ address: server.address });
    const worker = await activityWorker(connection, 'lifecycle-held');
    await expect(connection.close()).rejects.toThrow(HELD);
    await disposeUnstarted([worker], new Error('not wanted'));
    expect(worker.getState()).toBe('STOPPED');
    await connection.close();
  });

  it('one failed creation: the others are disposed of and the first failure is thrown', async () => {
    const connection = await NativeConnection.connect({ address: server.address });
    const created = createAllOrNone([
      activityWorker(connection, 'lifecycle-a'),
      // A reserved task queue name: Worker.create refuses it.
      activityWorker(connection, '__temporal_lifecycle'),
      activityWorker(connection, 'lifecycle-b'),
    ]);
    await expect(created).rejects.toThrow(/__temporal_/);
    await connection.close();
  });

  it('every creation succeeds: every worker is returned, not yet run', async () => {
    const connection = await NativeConnection.connect({ address: server.address });
    const workers = await createAllOrNone([activityWorker(connection, 'lifecycle-c'), activityWorker(connection, 'lifecycle-d')]);
    expect(workers.map((worker) => [worker.options.taskQueue, worker.getState()])).toEqual([
      ['lifecycle-c', 'INITIALIZED'],
      ['lifecycle-d', 'INITIALIZED'],
    ]);
    await disposeUnstarted(workers, new Error('test over'));
    await connection.close();
  });
});
