import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, pickedPortRange, portBindable } from '../../src/process/ports';
import { DEV_SERVER_DYNAMIC_CONFIG, DevServer, dynamicConfigArgs, portTakenInLog, REPO_ROOT, startDevServer } from '../../src/temporal/devServer';
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

  it('starts with the buffered-events limit a large pool needs and the task reads a transition needs (read off its command line)', () => {
    const args = readFileSync(`/proc/${server.pid}/cmdline`, 'utf8').split('\0');
    expect(args).toContain('history.maximumBufferedEventsBatch=1000');
    expect(args).toContain('history.transferProcessorMaxPollRPS=1000');
    expect(args).toContain('history.timerProcessorMaxPollRPS=1000');
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
    const logFile = path.join(os.tmpdir(), `timeshare-port-${port}.log`);
    try {
      await expect(startDevServer({ headless: true, port, logFile })).rejects.toThrow(new RegExp(`exited early[\\s\\S]*${port}: bind: address already in use`));
    } finally {
      await new Promise((resolve) => holder.close(resolve));
      rmSync(logFile, { force: true });
    }
  });

  it('a port it picked and another process took before the bind: started again on new ports', async () => {
    const holder = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const held = (holder.address() as { port: number }).port;
    const picks: number[] = [];
    // The second pick is the UI port: on the first attempt it is the held one, as if taken by a race.
    const pickPort = async (ip: string): Promise<number> => {
      const port = picks.length === 1 ? held : await freePort(ip);
      picks.push(port);
      return port;
    };
    const logFile = path.join(os.tmpdir(), `timeshare-race-${held}.log`);
    let started: DevServer | undefined;
    try {
      started = await startDevServer({ pickPort, logFile });
      expect(picks.length).toBe(8);
      expect(started.uiUrl).not.toContain(`:${held}`);
      expect(started.uiUrl).toBe(`http://127.0.0.1:${picks[5]}`);
    } finally {
      await started?.stop();
      await new Promise((resolve) => holder.close(resolve));
      rmSync(logFile, { force: true });
    }
  });
});

describe('free ports', () => {
  it('are picked below the kernel ephemeral range, where no outgoing connection takes them, and are bindable', async () => {
    const range = pickedPortRange();
    // The machines this project runs on have room below their ephemeral range (Linux: 32768).
    expect(range).toBeDefined();
    const picked = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      expect(port).toBeGreaterThanOrEqual(range!.lowest);
      expect(port).toBeLessThanOrEqual(range!.highest);
      expect(await portBindable(port)).toBe(true);
      expect(picked.has(port), `port ${port} handed out twice`).toBe(false);
      picked.add(port);
    }
  });

  it("leave the kernel to pick where its ephemeral range starts too low to leave room below it", () => {
    expect(pickedPortRange(32_768)).toEqual({ lowest: 20_000, highest: 32_767 });
    expect(pickedPortRange(49_152)).toEqual({ lowest: 20_000, highest: 49_151 });
    expect(pickedPortRange(1_024)).toBeUndefined();
    expect(pickedPortRange(20_500)).toBeUndefined();
  });

  it("the port a server could not bind is read from its log, whatever it logged around it", () => {
    const line = '{"time":"2026-11-29T19:24:09.175399195Z","level":"FATAL","prefix":"echo","file":"server.go","line":"155","message":"listen tcp 127.0.0.1:43611: bind: address already in use"}';
    expect(portTakenInLog(`starting\n${line}\n`)).toBe(43611);
    expect(portTakenInLog('listen tcp [::1]:7233: bind: address already in use')).toBe(7233);
    expect(portTakenInLog('{"level":"ERROR","message":"unrelated"}')).toBeUndefined();
  });
});

describe('dev server dynamic config', () => {
  it('defaults to the values of the cluster config; a caller overrides a key or adds one', () => {
    const defaults = ['history.maximumBufferedEventsBatch=1000', 'history.transferProcessorMaxPollRPS=1000', 'history.timerProcessorMaxPollRPS=1000'];
    expect(dynamicConfigArgs()).toEqual(defaults.flatMap((value) => ['--dynamic-config-value', value]));
    expect(dynamicConfigArgs({ 'history.maximumBufferedEventsBatch': 200, 'matching.numTaskqueueReadPartitions': 1 })).toEqual([
      '--dynamic-config-value',
      'history.maximumBufferedEventsBatch=200',
      ...defaults.slice(1).flatMap((value) => ['--dynamic-config-value', value]),
      '--dynamic-config-value',
      'matching.numTaskqueueReadPartitions=1',
    ]);
  });

  it('sets what the cluster config sets, to the same values', () => {
    const clusterScript = readFileSync(path.join(REPO_ROOT, 'scripts', 'cluster.sh'), 'utf8');
    for (const [key, value] of Object.entries(DEV_SERVER_DYNAMIC_CONFIG)) {
      expect(clusterScript, key).toMatch(new RegExp(`^${key.replace(/\./g, '\\.')}:\n  - value: ${String(value)}$`, 'm'));
    }
  });
});
