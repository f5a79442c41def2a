/**
 * The broadcast sync's teardown after a failed attempt (src/workflows/weightSync.ts): it undoes
 * only what the attempt asked of the members. An attempt that failed while the members' engines
 * were being awaited opened no group, so nothing is closed or left; one whose open failed closes
 * on the trainer only; one that failed in its collective closes and leaves everywhere. A real dev
 * server runs the workflow; the activities record what they were asked.
 */
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { smallRunConfig } from '../../src/config/small';
import { parseRunConfig } from '../../src/config';
import type { GpuNodeActivities } from '../../src/contract/activities';
import { rankQueue, trainerQueue } from '../../src/contract/naming';
import { buildRunSpec } from '../../src/contract/spec';
import type { BroadcastSyncSpec, RunSpec } from '../../src/contract/types';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import type { BroadcastSyncOutcome } from '../../src/workflows/weightSync';
import type { BroadcastOnceInput } from '../fixtures/weightSyncWorkflows';

type Step = 'awaitWeightGroupMembers' | 'openWeightGroup' | 'receiveWeights';
type Recorded = Pick<GpuNodeActivities, Step | 'joinWeightGroup' | 'broadcastWeights' | 'closeWeightGroup' | 'leaveWeightGroup'>;

const RUN = 'teardown-run';
const RANKS = [0, 1, 2, 3];

function broadcastSpec(): RunSpec & { weightSync: BroadcastSyncSpec } {
  const parsed = parseRunConfig(
    smallRunConfig({
      run: { id: RUN, iterations: 1 },
      engine: { weightSync: { mode: 'broadcast', timeoutSeconds: 30, attempts: 2 } },
      temporal: { activityRetry: { initialIntervalSeconds: 0.05, maximumAttempts: 1 } },
    }),
    '<teardown test>',
  );
  const spec = buildRunSpec(parsed, RUN);
  if (spec.weightSync?.mode !== 'broadcast') throw new Error('the test config must sync by broadcast');
  return { ...spec, weightSync: spec.weightSync };
}

describe('broadcast sync: teardown after a failed attempt (real Temporal)', () => {
  let server: DevServer;
  let connection: NativeConnection;
  let client: Client;
  let workers: Worker[] = [];
  let running: Promise<void>[] = [];
  const spec = broadcastSpec();
  /** Each activity call as `<name> <group>`, in the order the workers ran them. */
  let calls: string[] = [];
  /** The step that fails in the first attempt. */
  let failing: Step | undefined;

  const fail = (step: Step, groupName: string): void => {
    if (failing === step && groupName.endsWith('-a1')) throw ApplicationFailure.nonRetryable(`${step} fails in attempt 1`, 'TestFault');
  };
  const activities: Recorded = {
    async awaitWeightGroupMembers() {
      // Called once per attempt, before its group has a name: tagged with the attempt's number.
      const attempt = `a${calls.filter((call) => call.startsWith('awaitWeightGroupMembers')).length + 1}`;
      calls.push(`awaitWeightGroupMembers ${attempt}`);
      fail('awaitWeightGroupMembers', `-${attempt}`);
    },
    async openWeightGroup({ spec: group }) {
      calls.push(`openWeightGroup ${group.name.slice(-2)}`);
      fail('openWeightGroup', group.name);
      return { name: group.name, masterAddress: group.masterAddress, masterPort: 29_500, worldSize: group.worldSize, backend: group.backend };
    },
    async joinWeightGroup({ group }) {
      calls.push(`joinWeightGroup ${group.name.slice(-2)}`);
    },
    async broadcastWeights({ groupName }) {
      calls.push(`broadcastWeights ${groupName.slice(-2)}`);
      return { bytes: 1, buckets: 1, tensors: 1, seconds: 0 };
    },
    async receiveWeights({ group }) {
      calls.push(`receiveWeights ${group.name.slice(-2)}`);
      fail('receiveWeights', group.name);
    },
    async closeWeightGroup({ groupName }) {
      calls.push(`closeWeightGroup ${groupName.slice(-2)}`);
    },
    async leaveWeightGroup({ groupName }) {
      calls.push(`leaveWeightGroup ${groupName.slice(-2)}`);
    },
  };

  beforeAll(async () => {
    server = await startDevServer({ headless: true });
    connection = await NativeConnection.connect({ address: server.address });
    client = new Client({ connection: await Connection.connect({ address: server.address }) });
    const prefix = spec.taskQueuePrefix;
    workers = await Promise.all([
      Worker.create({ connection, taskQueue: 'weight-sync-teardown', workflowsPath: path.join(__dirname, '..', 'fixtures', 'weightSyncWorkflows.ts') }),
      Worker.create({ connection, taskQueue: trainerQueue(prefix, 0), activities }),
      Worker.create({ connection, taskQueue: rankQueue(prefix, 0), activities }),
    ]);
    running = workers.map((worker) => worker.run());
  }, 180_000);

  afterAll(async () => {
    for (const worker of workers) worker.shutdown();
    await Promise.all(running);
    await client?.connection.close();
    await connection?.close();
    await server?.stop();
  });

  beforeEach(() => {
    calls = [];
  });

  const syncOnce = async (step: Step | undefined): Promise<BroadcastSyncOutcome> => {
    failing = step;
    const input: BroadcastOnceInput = { spec, ranks: RANKS, version: 1 };
    return client.workflow.execute('broadcastOnce', { taskQueue: 'weight-sync-teardown', workflowId: `teardown-${step ?? 'none'}-${Date.now()}`, args: [input] });
  };
  const ofAttempt = (attempt: string): string[] => calls.filter((call) => call.endsWith(` ${attempt}`)).map((call) => call.split(' ')[0]!);

  it('an attempt that failed awaiting the members opened nothing: nothing is closed or left', async () => {
    const outcome = await syncOnce('awaitWeightGroupMembers');
    expect(outcome).toMatchObject({ attempts: 2, fellBackToDisk: false });
    expect(ofAttempt('a1')).toEqual(['awaitWeightGroupMembers']);
    expect(ofAttempt('a2')).toEqual(['awaitWeightGroupMembers', 'openWeightGroup', 'joinWeightGroup', expect.stringMatching(/^(broadcastWeights|receiveWeights)$/), expect.stringMatching(/^(broadcastWeights|receiveWeights)$/)]);
  }, 120_000);

  it('an attempt whose open failed closes on the trainer only: no member was asked to join', async () => {
    const outcome = await syncOnce('openWeightGroup');
    expect(outcome).toMatchObject({ attempts: 2, fellBackToDisk: false });
    expect(ofAttempt('a1').sort()).toEqual(['awaitWeightGroupMembers', 'closeWeightGroup', 'openWeightGroup']);
  }, 120_000);

  it('an attempt that failed in its collective closes the group and leaves it on every node', async () => {
    const outcome = await syncOnce('receiveWeights');
    expect(outcome).toMatchObject({ attempts: 2, fellBackToDisk: false });
    expect(ofAttempt('a1')).toEqual(expect.arrayContaining(['openWeightGroup', 'joinWeightGroup', 'receiveWeights', 'closeWeightGroup', 'leaveWeightGroup']));
  }, 120_000);
});
