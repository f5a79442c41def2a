/**
 * `timeshare dev --metrics-port`: each worker process serves Prometheus metrics on its own port.
 * The run is held in its first train step (a `slow` trainer fault), so the scrape sees a known
 * point: the batch is complete, the train step has started. Real processes (`bin/timeshare`), a
 * real Temporal dev server, no mocks. A port in use is refused before anything starts.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exitCodes';
import { freePort } from '../../src/process/ports';
import { holdTrainStep, writeHoldableConfig } from '../helpers/heldTrainStep';
import { runCli, startCli } from '../helpers/processes';

const BATCH = 8;

/** The value of each sample line of `name` whose labels include `labels` (Prometheus text format). */
function values(exposition: string, name: string, labels: Record<string, string>): number[] {
  return exposition
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) && Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`)))
    .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
}

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

describe('`dev --metrics-port`', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-dev-metrics-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("serves each worker's metrics on its own port while the run goes on", async () => {
    const runId = 'dev-metrics';
    const config = writeHoldableConfig(dir, runId);
    const stateDir = path.join(dir, 'state');
    const metricsPort = await freePort();
    // Injected before dev starts: the first train step is the one held, however fast the rollout.
    const held = holdTrainStep(stateDir, runId, config);
    const dev = startCli(['dev', config, '--state-dir', stateDir, '--port', String(await freePort()), '--ui-port', String(await freePort()), '--metrics-port', String(metricsPort)]);
    try {
      await dev.waitFor(/started run 'dev-metrics'/, 240_000);
      expect(dev.output()).toContain(`metrics (Prometheus): orchestrator http://127.0.0.1:${metricsPort}/metrics, gpu-node-0 http://127.0.0.1:${metricsPort + 1}/metrics`);
      const release = await held;
      // Held in the first train step: the batch's samples have completed on the gpu-node's ranks,
      // and the orchestrator has run the run's and the iteration's workflow tasks.
      const gpuNode = await scrape(metricsPort + 1);
      const completed = values(gpuNode, 'timeshare_rollout_sample_ends_total', { run_id: runId, outcome: 'completed' });
      expect(completed.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(BATCH);
      expect(values(gpuNode, 'temporal_activity_execution_latency_count', { activity_type: 'runRolloutShards' }).length).toBeGreaterThan(0);
      const orchestrator = await scrape(metricsPort);
      expect(values(orchestrator, 'temporal_workflow_task_execution_latency_count', { workflow_type: 'iterationWorkflow' }).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
      release();
      await dev.waitFor(/run 'dev-metrics' finished: 2 iterations, weights v2/, 240_000);
      expect(await dev.exited).toBe(EXIT.ok);
    } finally {
      dev.kill('SIGKILL');
    }
  }, 600_000);

  it('refuses a first metrics port whose run of ports is taken, before it starts anything', async () => {
    const taken = await freePort();
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(taken + 1, '127.0.0.1', resolve));
    try {
      const config = writeHoldableConfig(dir, 'dev-metrics-taken');
      const stateDir = path.join(dir, 'state-taken');
      const result = await runCli(['dev', config, '--state-dir', stateDir, '--port', String(await freePort()), '--metrics-port', String(taken)], { timeoutMs: 120_000 });
      expect(result.out).toContain(`--metrics-port ${taken}: 127.0.0.1:${taken + 1}, the gpu-node-0 worker's metrics address, is in use`);
      expect(result.code).toBe(EXIT.usage);
      expect(existsSync(path.join(stateDir, 'temporal.db'))).toBe(false);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  }, 180_000);

  it("refuses a run of metrics ports that holds the server's port", async () => {
    const port = await freePort();
    const config = writeHoldableConfig(dir, 'dev-metrics-overlap');
    const result = await runCli(['dev', config, '--state-dir', path.join(dir, 'state-overlap'), '--port', String(port), '--metrics-port', String(port - 1)], { timeoutMs: 120_000 });
    expect(result.out).toContain(`--metrics-port ${port - 1}: the workers' metrics ports ${port - 1}-${port} include the server's --port ${port}`);
    expect(result.code).toBe(EXIT.usage);
  }, 180_000);
});
