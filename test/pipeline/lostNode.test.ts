/**
 * Lost node: a gpu-node worker SIGKILLed and not restarted. After the lost-node timeout its ranks
 * are marked lost, the iteration is restored and started again without them, and the run goes on
 * smaller; once the node is back, `timeshare return-ranks` brings them in (they reload and sync the
 * weights). Losing the node with the train group pauses the run with the reason instead. Real
 * processes (`bin/timeshare`), a real Temporal dev server. Nodes die while the run is paused
 * between iterations (a known point), so the test never races the run.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterationWorkflowId, runWorkflowId } from '../../src/contract/naming';
import type { RunStatus } from '../../src/contract/types';
import { FsTrajectoryStore } from '../../src/store';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import type { RunSummary } from '../../src/workflows/run';
import { diagnoseRun } from '../helpers/diagnose';
import { smallConfig } from '../helpers/pipeline';
import { startCli, type Proc } from '../helpers/processes';

const ITERATIONS = 5;
const RUN_ID = 'lost-node';

describe('lost node (real Temporal, real worker processes)', () => {
  let server: DevServer;
  let client: Client;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-lost-node-'));
    server = await startDevServer({ headless: true, logFile: path.join(dir, 'temporal.log') });
    client = new Client({ connection: await Connection.connect({ address: server.address }) });
  });
  afterAll(async () => {
    await client?.connection.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ranks of a node that never returns are marked lost, the pool goes on smaller, return-ranks brings them back; losing the train node pauses', async () => {
    const config = path.join(dir, 'run.yaml');
    writeFileSync(
      config,
      stringify(
        smallConfig({
          run: { id: RUN_ID, iterations: ITERATIONS },
          // 2 nodes × 3 GPUs, a rank per GPU; the train group [0, 1] is on node 0.
          pool: { nodes: 2, gpusPerNode: 3 },
          train: { gpus: [0, 1] },
          store: { dir: path.join(dir, 'store') },
          temporal: { heartbeatTimeoutSeconds: 2, lostNodeTimeoutSeconds: 3, activityRetry: { initialIntervalSeconds: 0.2, maximumAttempts: 5 } },
        }),
      ),
    );
    const stateDir = path.join(dir, 'state');
    const common = [config, '--address', server.address, '--state-dir', stateDir, '--exit-with-parent'];
    const node = (index: number) => startCli(['worker', 'gpu-node', ...common, '--node', String(index)]);
    const procs: Proc[] = [startCli(['worker', 'orchestrator', ...common]), node(0), node(1)];
    const handle = client.workflow.getHandle(runWorkflowId(RUN_ID));
    const waitStatus = async (what: string, predicate: (status: RunStatus) => boolean, timeoutMs = 60_000): Promise<RunStatus> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const status = await handle.query<RunStatus>('status');
        if (predicate(status)) return status;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; status: ${JSON.stringify(status)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const cli = async (args: string[]) => {
      const proc = startCli([...args, '--address', server.address]);
      const code = await proc.exited;
      return { code, output: proc.output() };
    };
    try {
      await Promise.all(procs.map((proc) => proc.waitFor(/worker for run/)));
      expect((await cli(['start', config])).code).toBe(0);
      // The run is held at known points (paused between iterations) while the test kills and
      // restarts nodes, so nothing depends on how fast the iterations run against the CLI calls.
      const paused = () => waitStatus('paused', (s) => s.paused);
      // Resume and at once ask to pause again: the run does one iteration (or stops at the next
      // loop turn if the iteration failed) and waits.
      const oneIteration = async (): Promise<RunStatus> => {
        await handle.executeUpdate('resume');
        await handle.executeUpdate('pause');
        return paused();
      };
      const engineVersion = (rank: number): number =>
        (JSON.parse(readFileSync(path.join(stateDir, 'engines', RUN_ID, `rank-${rank}.json`), 'utf8')) as { weightVersion: number }).weightVersion;

      await handle.executeUpdate('pause');
      // (A pause that reaches the run before its first iteration holds it before iteration 0.)
      let first = (await paused()).iteration;
      if (first === 0) first = (await oneIteration()).iteration;
      expect(first).toBe(1);
      // Node 1 (ranks 3, 4, 5) dies between two iterations and does not come back.
      procs[2]!.kill('SIGKILL');
      await procs[2]!.exited;
      const lost = await oneIteration();
      expect(lost.iteration).toBe(first);
      expect(lost.lostRanks).toEqual([3, 4, 5]);
      // One execution of the iteration ended with the lost ranks.
      const failures: string[] = [];
      for await (const execution of client.workflow.list({ query: `WorkflowId = '${iterationWorkflowId(RUN_ID, first)}' AND ExecutionStatus = 'Failed'` })) {
        const history = await client.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory();
        failures.push(history.events?.at(-1)?.workflowExecutionFailedEventAttributes?.failure?.message ?? '');
      }
      expect(failures.join('\n')).toMatch(/ranks 3,4,5 lost in phase '\w+'.*pool restored without them/);

      // The pool goes on without them: the same iteration again, on ranks 0-2.
      const smaller = await oneIteration();
      expect(smaller.iteration).toBe(first + 1);
      expect(smaller.lastError).toBeUndefined();
      expect(smaller.lostRanks).toEqual([3, 4, 5]);
      // Ranks 0-2 took the new weights; the lost ranks kept the ones they had when node 1 died.
      expect([0, 1, 2].map(engineVersion)).toEqual([smaller.iteration, smaller.iteration, smaller.iteration]);
      expect([3, 4, 5].map(engineVersion)).toEqual([first, first, first]);

      // Only lost ranks can be returned.
      const refused = await cli(['return-ranks', RUN_ID, '2']);
      expect(refused.code).not.toBe(0);
      expect(refused.output).toMatch(/returned ranks/);

      // The operator brings the node back and returns its ranks; they rejoin at the next iteration.
      procs[2] = node(1);
      await procs[2].waitFor(/worker for run/);
      const returned = await cli(['return-ranks', RUN_ID, '3,4,5']);
      expect(returned.code, returned.output).toBe(0);
      const rejoined = await oneIteration();
      expect(rejoined.iteration).toBe(smaller.iteration + 1);
      expect(rejoined.lostRanks).toBeUndefined();
      expect([0, 1, 2, 3, 4, 5].map(engineVersion)).toEqual(Array(6).fill(rejoined.iteration));

      // Node 0 (the train group) dies: below the multiplexed minimum, the run pauses and says why.
      procs[1]!.kill('SIGKILL');
      await procs[1]!.exited;
      expect((await cli(['resume', RUN_ID])).code).toBe(0);
      const below = await waitStatus('paused below the minimum', (s) => s.paused && s.lostRanks !== undefined);
      expect(below.lostRanks).toEqual([0, 1, 2]);
      // Which call meets the dead node first decides the reason: a shard's launch in the rollout
      // (ranks lost, the pool below the minimum) or, when ranks 3-5 fill the batch before the
      // lost-node timeout, the shrink's trainer onload (the trainer node is lost). Both pause and say what to do.
      const belowMinimum = /ranks 0,1 hold train GPUs.*train group is incomplete.*timeshare return-ranks lost-node 0,1,2/;
      const trainerLost = /paused: trainer node 0 is lost .*ranks 0,1,2 lost in phase '\w+'.*timeshare resume lost-node/;
      expect(below.lastError).toMatch(new RegExp(`${belowMinimum.source}|${trainerLost.source}`));
      // Only the pause below the minimum goes on by returning ranks; a lost trainer node also needs a resume.
      expect(below.pausedForLostRanks).toBe(belowMinimum.test(below.lastError ?? '') ? true : undefined);
      expect((await cli(['status', RUN_ID])).output).toMatch(/lost ranks: 0,1,2/);

      procs[1] = node(0);
      await procs[1].waitFor(/worker for run/);
      expect((await cli(['return-ranks', RUN_ID, '0,1,2'])).code).toBe(0);
      // A run paused for its trainer node waits for the operator's resume once the node is back.
      if (trainerLost.test(below.lastError ?? '')) expect((await cli(['resume', RUN_ID])).code).toBe(0);
      const summary = (await Promise.race([
        handle.result(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('run did not finish in 90 s')), 90_000)),
      ])) as RunSummary;
      expect(summary.iterations).toBe(ITERATIONS);
      expect(summary.version).toBe(ITERATIONS);

      // Every sample exactly once; every rank, returned ones included, on the final weights.
      const store = new FsTrajectoryStore(path.join(dir, 'store'), RUN_ID);
      const audit = await store.audit();
      expect(audit.violations).toEqual([]);
      expect(await store.listBatches()).toEqual(Array.from({ length: ITERATIONS }, (_, i) => i));
      expect(audit.batched).toBe(ITERATIONS * 8);
      for (let rank = 0; rank < 6; rank++) {
        const state = JSON.parse(readFileSync(path.join(stateDir, 'engines', RUN_ID, `rank-${rank}.json`), 'utf8')) as { weightVersion: number; resident: string[] };
        expect(state, `rank ${rank}`).toEqual({ weightVersion: ITERATIONS, resident: ['weights', 'kv_cache'] });
      }
    } catch (error) {
      console.error(await diagnoseRun(client, RUN_ID));
      for (const proc of procs) console.error(`---- ${proc.child.spawnargs.slice(1, 4).join(' ')}\n${proc.output().slice(-3000)}`);
      throw error;
    } finally {
      for (const proc of procs) proc.kill('SIGTERM');
      await Promise.all(procs.map((proc) => proc.exited));
    }
  }, 600_000);
});
