import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevServer, startDevServer } from '../../src/temporal/devServer';
import * as activities from '../fixtures/smokeActivities';

describe('temporal dev server (real, provisioned CLI)', () => {
  let server: DevServer;

  beforeAll(async () => {
    server = await startDevServer({ headless: true });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('runs a workflow with activities end to end and stops cleanly', async () => {
    const nativeConnection = await NativeConnection.connect({ address: server.address });
    const worker = await Worker.create({
      connection: nativeConnection,
      taskQueue: 'smoke',
      workflowsPath: path.join(__dirname, '..', 'fixtures', 'smokeWorkflows.ts'),
      activities,
    });
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    try {
      const result = await worker.runUntil(
        client.workflow.execute('smokeWorkflow', { taskQueue: 'smoke', workflowId: `smoke-${Date.now()}`, args: [21] }),
      );
      expect(result).toBe(84);
    } finally {
      await connection.close();
      await nativeConnection.close();
    }
  });

  it('stop() ends the server process', async () => {
    const other = await startDevServer({ headless: true });
    await other.stop();
    expect(() => process.kill(other.pid, 0)).toThrow();
  });

  it('a port another process holds: a clear error naming it, no retry on a port the caller chose', async () => {
    // Holds the port; drops whatever connects (a readiness probe), so that close() does not wait on it.
    const holder = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      await expect(startDevServer({ headless: true, port, logFile: path.join(os.tmpdir(), `timeshare-port-${port}.log`) })).rejects.toThrow(
        new RegExp(`exited early[\\s\\S]*${port}: bind: address already in use`),
      );
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });
});
