/**
 * The production path on a PostgreSQL-backed Temporal server (scripts/cluster.sh): the server
 * built from the Go module proxy, PostgreSQL, schema, the `default` namespace and the search
 * attributes set up by the script; the README's cluster path (workers as `timeshare worker`
 * processes, the run started with `timeshare start`). Mid-run the Temporal server is SIGKILLed
 * and restarted, later PostgreSQL (postmaster and its backends); the run completes with every
 * sample exactly once (the store audit). A namespace without the search attributes gets a plain
 * refusal from `timeshare start`.
 *
 * Opt-in (`npm run test:cluster`): the first run builds the server (over an hour of compiling on
 * 2 busy cores; docs/reliability.md).
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runWorkflowId } from '../../src/contract/naming';
import type { RunStatus } from '../../src/contract/types';
import { FsTrajectoryStore } from '../../src/store';
import { portBindable } from '../../src/process/ports';
import { temporalCliPath } from '../../src/temporal/devServer';
import { runCli, startCli, type Proc } from '../helpers/processes';

const ENABLED = process.env.TIMESHARE_CLUSTER_TEST === '1';
const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'cluster.sh');
const ITERATIONS = 6;
const BATCH = 8;
const RUN_ID = 'cluster';

/**
 * A base port whose next `count` ports are all free (the server's services use consecutive ports),
 * all below 32768: the server stores its membership ports in a SMALLINT column.
 */
async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (32_768 - count - 20_000));
    const free = await Promise.all(Array.from({ length: count }, (_, i) => portBindable(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error; // the server or its database may be down: that is what the test does
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last error: ${String(lastError)})`);
    await sleep(500);
  }
}

describe.skipIf(!ENABLED)('PostgreSQL-backed Temporal cluster (scripts/cluster.sh)', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let address: string;
  const workers: Proc[] = [];
  const cluster = (command: string) => promisify(execFile)('bash', [SCRIPT, command], { env, maxBuffer: 16 * 1024 * 1024, timeout: 1_800_000 });

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-cluster-'));
    chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user when the test runs as root
    const port = await freePortRange(10);
    let pgPort = await freePortRange(1);
    while (pgPort >= port && pgPort < port + 10) pgPort = await freePortRange(1);
    address = `127.0.0.1:${port}`;
    env = { ...process.env, TIMESHARE_CLUSTER_DIR: path.join(dir, 'cluster'), TIMESHARE_CLUSTER_PORT: String(port), TIMESHARE_PG_PORT: String(pgPort) };
    await cluster('up');
  }, 1_900_000);

  afterAll(async () => {
    for (const worker of workers) worker.kill('SIGTERM');
    await Promise.all(workers.map((worker) => worker.exited));
    if (dir !== undefined) {
      await cluster('down').catch((error: unknown) => console.error(`cluster.sh down failed: ${String(error)}`));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('completes a run through SIGKILLs of the Temporal server and of PostgreSQL, every sample exactly once', async () => {
    const store = path.join(dir, 'store');
    const config = path.join(dir, 'cluster.yaml');
    writeFileSync(
      config,
      stringify({
        run: { id: RUN_ID, iterations: ITERATIONS },
        pool: { nodes: 1, gpusPerNode: 4 },
        strategy: 'multiplexed',
        rollout: { gpus: 'all', gpusPerRank: 1 },
        train: { gpus: [0, 1] },
        batchSize: BATCH,
        asyncRatio: 1,
        maxTurns: 8,
        simulation: {
          timeScale: 0.02,
          workload: { turns: { median: 3, p90: 7 }, completionTokensPerTurn: { median: 150, p90: 600 }, envStepMs: { median: 300, p90: 1200 } },
        },
        store: { dir: store },
      }),
    );
    const flags = ['--address', address, '--state-dir', path.join(dir, 'state')];
    workers.push(startCli(['worker', 'orchestrator', config, ...flags]));
    workers.push(startCli(['worker', 'gpu-node', config, '--node', '0', ...flags]));
    const started = startCli(['start', config, '--address', address]);
    expect(await started.exited, started.output()).toBe(0);

    const client = new Client({ connection: await Connection.connect({ address }) });
    const handle = client.workflow.getHandle(runWorkflowId(RUN_ID));
    /** Waits for iteration k, then checks the run is still mid-way (so the kill that follows hits a running run). */
    const iterationReached = async (k: number): Promise<void> => {
      const status = await waitFor(`iteration ${k}`, async () => {
        const current = await handle.query<RunStatus>('status');
        return current.iteration >= k ? current : undefined;
      }, 900_000);
      expect(status.iteration, 'the run must still be running when it is killed').toBeLessThan(ITERATIONS - 1);
    };

    const serverPid = () => Number(readFileSync(path.join(dir, 'cluster', 'temporal-server.pid'), 'utf8'));
    const postmasterPid = () => Number(readFileSync(path.join(dir, 'cluster', 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);

    await iterationReached(1);
    const killedServer = serverPid();
    process.kill(killedServer, 'SIGKILL');
    await sleep(10_000);
    await cluster('up');
    expect(serverPid(), 'cluster.sh up must start a new server').not.toBe(killedServer);

    await iterationReached(2);
    const killedPostmaster = postmasterPid();
    const { stdout: backends } = await promisify(execFile)('pgrep', ['-P', String(killedPostmaster)]).catch(() => ({ stdout: '' }));
    process.kill(killedPostmaster, 'SIGKILL');
    for (const pid of backends.split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    await sleep(10_000);
    await cluster('up');
    expect(postmasterPid(), 'cluster.sh up must start PostgreSQL again').not.toBe(killedPostmaster);

    const summary = await waitFor('the run to complete', async () => ((await handle.describe()).status.name === 'COMPLETED' ? handle.result() : undefined), 900_000);
    expect((summary as { iterations: number }).iterations).toBe(ITERATIONS);
    await client.connection.close();

    const trajectories = new FsTrajectoryStore(store, RUN_ID);
    const audit = await trajectories.audit();
    expect(audit.violations).toEqual([]);
    expect(audit.batched).toBe(ITERATIONS * BATCH);
    expect(await trajectories.listBatches()).toEqual(Array.from({ length: ITERATIONS }, (_, i) => i));
  }, 2_400_000);

  it('refuses to start a run on a namespace without the search attributes, naming them and the fix', async () => {
    await promisify(execFile)(temporalCliPath(), ['operator', 'namespace', 'create', '--namespace', 'bare', '--address', address]);
    const config = path.join(dir, 'bare.yaml');
    writeFileSync(config, stringify({ run: { id: 'bare' }, pool: { nodes: 1, gpusPerNode: 2 }, strategy: 'colocated', train: { gpus: 'all' }, asyncRatio: 0, batchSize: 4, store: { dir: path.join(dir, 'bare-store') } }));
    // A namespace just created is known to the front end once its namespace cache refreshes (≈ 10 s).
    const refused = await waitFor('namespace bare to be usable', async () => {
      const result = await runCli(['start', config, '--address', address, '--namespace', 'bare'], { timeoutMs: 120_000 });
      return result.stderr.includes("namespace 'bare' not found") ? undefined : result;
    }, 120_000);
    expect(refused.code, refused.out).toBe(1);
    expect(refused.stderr).toMatch(/no mapping defined for search attribute Timeshare/);
    expect(refused.stderr).toContain('Register the run\'s search attributes');
  }, 300_000);
});
