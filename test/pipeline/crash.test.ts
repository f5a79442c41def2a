/**
 * Durability: processes are SIGKILLed in the middle of an iteration and started again; the same
 * run continues (same workflow ids, no iteration repeated) and every sample is accounted for
 * exactly once. Real processes (`bin/timeshare`), a real Temporal dev server, no mocks.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runWorkflowId } from '../../src/pipeline/naming';
import type { RunStatus } from '../../src/pipeline/types';
import { FsTrajectoryStore } from '../../src/store';
import { freePort, startDevServer, type DevServer } from '../../src/temporal/devServer';
import type { RunSummary } from '../../src/workflows/run';
import { smallConfig } from '../helpers/pipeline';
import { diagnoseRun } from '../helpers/diagnose';
import { startCli, survivorsAfter, type Proc } from '../helpers/processes';

const ITERATIONS = 3;

function writeConfig(dir: string, runId: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, `${runId}.yaml`);
  const config = smallConfig({
    run: { id: runId, iterations: ITERATIONS },
    store: { dir: path.join(dir, 'store') },
    // A dead worker's activities are retried after this long without a heartbeat.
    temporal: { heartbeatTimeoutSeconds: 3 },
    ...extra,
  });
  writeFileSync(file, stringify(config));
  return file;
}

/** The store's own proof, plus the batches being exactly iterations 0..n-1 from versions 0..n-1. */
async function expectExactlyOnce(storeRoot: string, runId: string, batchSize: number): Promise<void> {
  const store = new FsTrajectoryStore(storeRoot, runId);
  const audit = await store.audit();
  expect(audit.violations).toEqual([]);
  expect(await store.listBatches()).toEqual(Array.from({ length: ITERATIONS }, (_, i) => i));
  for (let iteration = 0; iteration < ITERATIONS; iteration++) {
    const batch = await store.readBatch(iteration);
    expect(batch.fromVersion).toBe(iteration);
    expect(batch.sampleIds).toHaveLength(batchSize);
  }
  expect(audit.batched).toBe(ITERATIONS * batchSize);
}

describe('resume after SIGKILL of `timeshare dev`', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-dev-crash-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('re-running the same command continues the same run with every sample accounted for', async () => {
    const config = writeConfig(dir, 'dev-crash');
    const stateDir = path.join(dir, 'state');
    const args = async () => ['dev', config, '--state-dir', stateDir, '--port', String(await freePort()), '--ui-port', String(await freePort())];

    const first: Proc = startCli(await args());
    try {
      await first.waitFor(/started run 'dev-crash'/);
      // Kill it in the middle of the second iteration (shrink or train, whichever the progress
      // lines catch: with fast transitions a phase can pass between two status polls), with
      // shards in flight on the ranks that keep rolling out.
      await first.waitFor(/iter 2\/3 \| (shrink|train)/);
    } finally {
      first.kill('SIGKILL');
    }
    await first.exited;
    // No orphans: the server and workers of the killed dev end with it (src/process/owned.ts).
    const owned = Object.values(JSON.parse(readFileSync(path.join(stateDir, 'dev-processes.json'), 'utf8')) as Record<string, { pid: number }>);
    expect(owned.length).toBe(3);
    expect(await survivorsAfter(owned.map((record) => record.pid), 60_000)).toEqual([]);

    const second = startCli(await args());
    try {
      await second.waitFor(/resumed run 'dev-crash'/);
      const finished = await second.waitFor(/run 'dev-crash' finished/, 180_000);
      expect(finished).toContain(`${ITERATIONS} iterations, weights v${ITERATIONS}`);
      expect(await second.exited).toBe(0);
    } finally {
      second.kill('SIGKILL');
    }
    await expectExactlyOnce(path.join(dir, 'store'), 'dev-crash', 8);
  });
});

describe('worker SIGKILL mid-iteration, then restart', () => {
  let server: DevServer;
  let client: Client;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-worker-crash-'));
    server = await startDevServer({ headless: true, logFile: path.join(dir, 'temporal.log') });
    client = new Client({ connection: await Connection.connect({ address: server.address }) });
  });
  afterAll(async () => {
    await client?.connection.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases = [
    { worker: 'gpu-node', killDuring: 'train' },
    { worker: 'orchestrator', killDuring: 'rollout' },
  ] as const;

  for (const { worker, killDuring } of cases) {
    it(`${worker} worker killed during ${killDuring}: the run completes, nothing lost or counted twice`, async () => {
      const runId = `kill-${worker}`;
      const config = writeConfig(dir, runId);
      const stateDir = path.join(dir, `state-${worker}`);
      // --exit-with-parent: the workers end with the test process even if a timeout skips `finally`.
      const common = [config, '--address', server.address, '--state-dir', stateDir, '--exit-with-parent'];
      const argsOf = (name: 'gpu-node' | 'orchestrator') => (name === 'gpu-node' ? ['worker', 'gpu-node', ...common, '--node', '0'] : ['worker', 'orchestrator', ...common]);
      const procs: Proc[] = [startCli(argsOf('orchestrator')), startCli(argsOf('gpu-node'))];
      try {
        await Promise.all(procs.map((proc) => proc.waitFor(/worker for run/)));
        const start = startCli(['start', config, '--address', server.address]);
        await start.waitFor(/started run/);
        const handle = client.workflow.getHandle(runWorkflowId(runId));

        // Wait until iteration 1 (the second) reaches the phase, then kill the worker.
        for (;;) {
          const status = await handle.query<RunStatus>('status');
          if (status.iteration === 1 && status.phase === killDuring) break;
          expect(status.iteration).toBeLessThanOrEqual(1);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const victim = worker === 'gpu-node' ? 1 : 0;
        procs[victim]!.kill('SIGKILL');
        await procs[victim]!.exited;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        procs[victim] = startCli(argsOf(worker));

        const summary = (await Promise.race([
          handle.result(),
          new Promise((_, reject) => setTimeout(() => reject(new Error('run did not finish in 90 s')), 90_000)),
        ])) as RunSummary;
        expect(summary.iterations).toBe(ITERATIONS);
        expect(summary.version).toBe(ITERATIONS);
        const status = await handle.query<RunStatus>('status');
        expect(status.samples.trained).toBe(ITERATIONS * 8);
        await expectExactlyOnce(path.join(dir, 'store'), runId, 8);
      } catch (error) {
        console.error(await diagnoseRun(client, runId));
        for (const proc of procs) console.error(`---- ${proc.child.spawnargs.slice(1, 4).join(' ')}\n${proc.output().slice(-4000)}`);
        throw error;
      } finally {
        for (const proc of procs) proc.kill('SIGTERM');
        await Promise.all(procs.map((proc) => proc.exited));
      }
    });
  }
});
