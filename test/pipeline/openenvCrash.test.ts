/**
 * A gpu-node worker SIGKILLed while its samples are mid-episode on a real OpenEnv server
 * (examples/agentic-openenv.yaml: the vault environment, reference engines, real worker processes
 * through `bin/timeshare`, a real Temporal dev server). The restarted worker has none of the dead
 * one's sessions: every sample it takes back mid-episode is re-created and replayed from the
 * store's recorded actions (the environment is declared deterministic), finishes its episode,
 * and every sample is accounted for exactly once.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runWorkflowId } from '../../src/contract/naming';
import { FsTrajectoryStore, type SampleRecord } from '../../src/store';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import type { RunSummary } from '../../src/workflows/run';
import { diagnoseRun } from '../helpers/diagnose';
import { agenticConfig, startAgenticProcesses, type AgenticProcesses } from '../helpers/openenvRl';
import { startCli, type Proc } from '../helpers/processes';

const ITERATIONS = 2;
const BATCH = 8;

describe('gpu-node worker killed mid-episode (OpenEnv server, real engines)', () => {
  let dir: string;
  let server: DevServer;
  let client: Client;
  let processes: AgenticProcesses;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-openenv-crash-'));
    // Slow turns (250 ms a token): the kill lands while samples are between their first and last turn.
    [server, processes] = await Promise.all([startDevServer({ headless: true, logFile: path.join(dir, 'temporal.log') }), startAgenticProcesses({ decodeDelayMs: 250 })]);
    client = new Client({ connection: await Connection.connect({ address: server.address }) });
  }, 600_000);
  afterAll(async () => {
    await client?.connection.close();
    await processes?.stop();
    await server?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('the samples it held mid-episode are replayed by the restarted worker; nothing lost or counted twice', { timeout: 900_000 }, async () => {
    const runId = 'openenv-kill-gpu-node';
    const storeDir = path.join(dir, 'store');
    const config = path.join(dir, `${runId}.yaml`);
    writeFileSync(
      config,
      stringify({ ...agenticConfig(processes, { runId, iterations: ITERATIONS, batchSize: BATCH }), store: { dir: storeDir }, temporal: { heartbeatTimeoutSeconds: 3 } }),
    );
    const common = [config, '--address', server.address, '--state-dir', path.join(dir, 'state'), '--exit-with-parent'];
    const gpuNode = () => startCli(['worker', 'gpu-node', ...common, '--node', '0']);
    const procs: Proc[] = [startCli(['worker', 'orchestrator', ...common]), gpuNode()];
    const store = new FsTrajectoryStore(storeDir, runId);
    try {
      await Promise.all(procs.map((proc) => proc.waitFor(/worker for run/, 300_000)));
      const start = startCli(['start', config, '--address', server.address]);
      await start.waitFor(/started run/, 300_000);
      const handle = client.workflow.getHandle(runWorkflowId(runId));

      // Wait until samples are mid-episode (some turns done, the episode not over), then kill the worker.
      let midEpisode: SampleRecord[] = [];
      for (;;) {
        const records = await store.readSamples(await store.listSampleIds()).catch(() => [] as SampleRecord[]);
        midEpisode = records.filter((r) => r.status === 'running' && r.turns.length >= 1 && r.turns.length < 4);
        if (midEpisode.length >= 2) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      procs[1]!.kill('SIGKILL');
      await procs[1]!.exited;
      const atKill = new Map(midEpisode.map((r) => [r.id, r.turns.length]));
      procs[1] = gpuNode();

      const summary = (await handle.result()) as RunSummary;
      expect(summary.iterations).toBe(ITERATIONS);
      const audit = await store.audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(ITERATIONS * BATCH);
      // The environment is deterministic: no sample ended because its episode was lost.
      expect(Object.keys(audit.dropped).filter((reason) => reason.startsWith('environment-'))).toEqual([]);
      // The samples caught mid-episode went on after the kill (on the new worker, by replay) to a whole episode.
      const after = await store.readSamples([...atKill.keys()]);
      const finished = after.filter((r) => r.status === 'completed');
      expect(finished.length).toBeGreaterThan(0);
      for (const record of finished) {
        expect(record.turns).toHaveLength(4);
        expect(record.turns.length).toBeGreaterThan(atKill.get(record.id) ?? 4);
        // The replayed episode agreed with the record: the turns after the kill follow the ones before it.
        expect(record.turns.slice(0, -1).every((t) => t.observationIds?.length === 2)).toBe(true);
      }
      expect(procs[1]!.output()).not.toMatch(/EnvironmentProtocolError/);
    } catch (error) {
      console.error(await diagnoseRun(client, runId));
      for (const proc of procs) console.error(`---- ${proc.child.spawnargs.slice(1, 4).join(' ')}\n${proc.output().slice(-4000)}`);
      throw error;
    } finally {
      for (const proc of procs) proc.kill('SIGTERM');
      await Promise.all(procs.map((proc) => proc.exited));
    }
  });
});
