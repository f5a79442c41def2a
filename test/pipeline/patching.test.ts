/**
 * The procedure for changing workflow code (docs/design.md §5.2), on a small workflow so each step
 * is visible: histories recorded on a real dev server by the old and the patched code, replayed
 * against each version of the code.
 *
 *   v1           the code running workflows were started with
 *   v2Unguarded  a new step added as is: an old history no longer replays (non-determinism)
 *   v2Patched    the step behind patched('extra-step'): old histories replay (old path), new ones record the marker
 *   v3Deprecated deprecatePatch('extra-step'): new histories replay; old ones do not, which is why this
 *                step waits until no workflow started before v2 is open
 */
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { temporal } from '@temporalio/proto';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import * as activities from '../fixtures/smokeActivities';

type History = temporal.api.history.v1.IHistory;
const VERSIONS = ['v1', 'v2Unguarded', 'v2Patched', 'v3Deprecated'] as const;
const quiet = { log: () => undefined, info: () => undefined, warn: () => undefined, error: console.error, debug: () => undefined, trace: () => undefined };

describe('changing workflow code: patched, then deprecatePatch', () => {
  let server: DevServer;
  let connection: Connection;
  const bundles = new Map<string, Awaited<ReturnType<typeof bundleWorkflowCode>>>();
  const histories = new Map<string, History>();

  /** Runs the workflow on the server with `version`'s code and returns its history. */
  async function record(version: (typeof VERSIONS)[number]): Promise<History> {
    const native = await NativeConnection.connect({ address: server.address });
    const taskQueue = `patching-${version}`;
    try {
      const worker = await Worker.create({ connection: native, taskQueue, workflowBundle: bundles.get(version)!, activities });
      const client = new Client({ connection });
      const handle = await client.workflow.start('changingWorkflow', { taskQueue, workflowId: `changing-${version}-${Date.now()}`, args: [21] });
      await worker.runUntil(handle.result());
      return await handle.fetchHistory();
    } finally {
      await native.close();
    }
  }

  const replay = async (history: History, version: (typeof VERSIONS)[number]) =>
    Worker.runReplayHistory({ workflowBundle: bundles.get(version)! }, history, `replay-${version}`);

  beforeAll(async () => {
    server = await startDevServer({ headless: true });
    connection = await Connection.connect({ address: server.address });
    for (const version of VERSIONS) {
      bundles.set(version, await bundleWorkflowCode({ workflowsPath: path.join(__dirname, '..', 'fixtures', 'patching', `${version}.ts`), logger: quiet }));
    }
    histories.set('v1', await record('v1'));
    histories.set('v2Patched', await record('v2Patched'));
  }, 120_000);
  afterAll(async () => {
    await connection?.close();
    await server?.stop();
  });

  it('an unguarded change breaks the replay of a workflow started before it', async () => {
    await replay(histories.get('v1')!, 'v1');
    await expect(replay(histories.get('v1')!, 'v2Unguarded')).rejects.toThrow(DeterminismViolationError);
  });

  it('the change behind patched() replays old histories and records its marker in new ones', async () => {
    await replay(histories.get('v1')!, 'v2Patched');
    await replay(histories.get('v2Patched')!, 'v2Patched');
    const markers = (histories.get('v2Patched')!.events ?? []).filter((event) => event.markerRecordedEventAttributes?.markerName === 'core_patch');
    expect(markers).toHaveLength(1);
    expect((histories.get('v1')!.events ?? []).some((event) => event.markerRecordedEventAttributes !== undefined && event.markerRecordedEventAttributes !== null)).toBe(false);
  });

  it('deprecatePatch() replays histories of the patched code, and only those', async () => {
    await replay(histories.get('v2Patched')!, 'v3Deprecated');
    await expect(replay(histories.get('v1')!, 'v3Deprecated')).rejects.toThrow(DeterminismViolationError);
  });
});
