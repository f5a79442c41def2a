/**
 * Watchers and `dev` through a Temporal server outage: the server is SIGKILLed while the run is
 * held in its train step (a `slow` engine fault, released once the server is back, so the run
 * cannot end before the kill). A watcher waits the outage out and reports the run's real end;
 * `dev` restarts the server it owns; nobody prints FAILED for a run that did not fail, and the
 * exit codes say what happened.
 * Real processes (`bin/timeshare`), a real Temporal dev server, no mocks.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exitCodes';
import { parseRunConfig } from '../../src/config';
import { backOffDelay } from '../../src/launch/supervised';
import { startWorkerProcesses, type WorkerProcesses } from '../../src/launch/workerProcesses';
import { buildRunSpec } from '../../src/contract/spec';
import { FsTrajectoryStore } from '../../src/store';
import { freePort } from '../../src/process/ports';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import { holdTrainStep, writeHoldableConfig } from '../helpers/heldTrainStep';
import { runCli, startCli } from '../helpers/processes';

async function expectAudited(storeRoot: string, runId: string): Promise<void> {
  const audit = await new FsTrajectoryStore(storeRoot, runId).audit();
  expect(audit.violations).toEqual([]);
  expect(audit.batched).toBe(2 * 8);
}

/** The run's worker processes against the server at `address`, restarted when they exit. */
function runWorkerProcesses(address: string, config: string, runId: string, stateDir: string, logDir: string): WorkerProcesses {
  const spec = buildRunSpec(parseRunConfig(JSON.parse(readFileSync(config, 'utf8')) as Record<string, unknown>, config), runId);
  return startWorkerProcesses({
    configPath: config,
    address,
    stateDir,
    layout: spec.layout,
    taskQueuePrefix: spec.taskQueuePrefix,
    logDir,
    restartDelayMs: backOffDelay,
  });
}

describe('`dev` when only its Temporal server is killed', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-dev-outage-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('restarts the server on the same database; the run finishes, dev exits 0, no FAILED line', async () => {
    const runId = 'dev-outage';
    const config = writeHoldableConfig(dir, runId);
    const stateDir = path.join(dir, 'state');
    const dev = startCli(['dev', config, '--state-dir', stateDir, '--port', String(await freePort()), '--ui-port', String(await freePort())]);
    try {
      await dev.waitFor(/started run 'dev-outage'/, 240_000);
      const release = await holdTrainStep(stateDir, runId, config);
      const { temporal } = JSON.parse(readFileSync(path.join(stateDir, 'dev-processes.json'), 'utf8')) as Record<string, { pid: number }>;
      process.kill(temporal!.pid, 'SIGKILL');
      await dev.waitFor(/Temporal dev server running again/, 300_000);
      release();
      await dev.waitFor(/run 'dev-outage' finished: 2 iterations, weights v2/, 240_000);
      expect(await dev.exited).toBe(EXIT.ok);
      expect(dev.output()).toMatch(/Temporal dev server \(pid \d+\) exited \(code null, signal SIGKILL\); starting it again on the same database/);
      expect(dev.output()).not.toContain('FAILED');
    } finally {
      dev.kill('SIGKILL');
    }
    await expectAudited(path.join(dir, 'store'), runId);
  }, 600_000);
});

describe('`start --watch` and `status` through an outage of a server they do not own', () => {
  let dir: string;
  let server: DevServer;
  let workers: WorkerProcesses | undefined;
  let port: number;
  const dbFile = () => path.join(dir, 'temporal.db');
  const startServer = () => startDevServer({ dbFile: dbFile(), port, headless: true, logFile: path.join(dir, 'temporal.log') });

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-watch-outage-'));
    mkdirSync(path.join(dir, 'state'), { recursive: true });
    port = await freePort();
    server = await startServer();
  });
  afterAll(async () => {
    await workers?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('waits out a server restart: "server unreachable, retrying", then the run finishes with exit 0', async () => {
    const runId = 'watch-outage';
    const config = writeHoldableConfig(dir, runId);
    const stateDir = path.join(dir, 'state');
    workers = runWorkerProcesses(server.address, config, runId, stateDir, path.join(dir, 'logs'));
    const watch = startCli(['start', config, '--address', server.address, '--watch', '--server-wait', '300']);
    try {
      await watch.waitFor(/started run 'watch-outage'/, 240_000);
      const release = await holdTrainStep(stateDir, runId, config);
      process.kill(server.pid, 'SIGKILL');
      await server.exited;
      await watch.waitFor(/server unreachable at .*, retrying for up to 300 s/, 300_000);
      // The watcher gives up only past its limit: `status` with a short one says so with exit 4.
      const status = await runCli(['status', runId, '--address', server.address, '--server-wait', '2']);
      expect(status.code).toBe(EXIT.serverUnreachable);
      expect(status.stderr).toMatch(/server unreachable at .*, retrying for up to 2 s/);
      expect(status.stderr).toMatch(/gave up: the Temporal server at .* has not answered/);
      server = await startServer();
      await watch.waitFor(/server reachable again/, 300_000);
      release();
      await watch.waitFor(/run 'watch-outage' finished: 2 iterations, weights v2/, 240_000);
      expect(await watch.exited).toBe(EXIT.ok);
      expect(watch.output()).not.toContain('FAILED');
    } finally {
      watch.kill('SIGKILL');
    }
    await expectAudited(path.join(dir, 'store'), runId);
  }, 600_000);

  it('gives up past --server-wait with exit 4 and no FAILED line, the run left as it is', async () => {
    const runId = 'watch-gives-up';
    const config = writeHoldableConfig(dir, runId);
    const stateDir = path.join(dir, 'state');
    await workers?.stop();
    workers = runWorkerProcesses(server.address, config, runId, stateDir, path.join(dir, 'logs-2'));
    const watch = startCli(['start', config, '--address', server.address, '--watch', '--server-wait', '5']);
    try {
      await watch.waitFor(/started run 'watch-gives-up'/, 240_000);
      await holdTrainStep(stateDir, runId, config);
      process.kill(server.pid, 'SIGKILL');
      await server.exited;
      expect(await watch.exited).toBe(EXIT.serverUnreachable);
      expect(watch.output()).toMatch(/gave up: the Temporal server at .* has not answered for \d+ s \(--server-wait 5\)/);
      expect(watch.output()).not.toContain('FAILED');
      expect(watch.output()).not.toContain('finished');
    } finally {
      watch.kill('SIGKILL');
    }
  }, 600_000);
});
