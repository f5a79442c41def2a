/**
 * `timeshare status` on a run that has ended while no worker runs (the usual case once `dev` has
 * finished): answered from the run workflow's close event, with the exit code of how it ended,
 * not "status unavailable: no poller seen". A real dev server, no worker; the `bin/timeshare` a
 * user runs.
 */
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exitCodes';
import { runWorkflowId } from '../../src/contract/naming';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import { runCli } from '../helpers/processes';

describe('timeshare status of an ended run without workers', () => {
  let server: DevServer;
  let connection: Connection;
  beforeAll(async () => {
    server = await startDevServer({ headless: true });
    connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    // A run workflow no worker ever picked up, terminated: closed, as a failed run is.
    const handle = await client.workflow.start('runWorkflow', { workflowId: runWorkflowId('ended-run'), taskQueue: 'nobody-polls-this', args: [] });
    await handle.terminate('given up by the operator');
  }, 120_000);
  afterAll(async () => {
    await connection?.close();
    await server?.stop();
  });

  it('says how the run ended and exits 3 for a terminated run', async () => {
    const result = await runCli(['status', 'ended-run', '--address', server.address, '--server-wait', '0'], { timeoutMs: 60_000 });
    expect(result.stderr).not.toContain('no poller');
    expect(result.stdout).toMatch(/^run 'ended-run' FAILED: Workflow execution terminated: given up by the operator$/m);
    expect(result.code).toBe(EXIT.runFailed);
  }, 60_000);

  it('--json gives how it ended when no status can be had', async () => {
    const result = await runCli(['status', 'ended-run', '--json', '--address', server.address, '--server-wait', '0'], { timeoutMs: 60_000 });
    expect(result.code).toBe(EXIT.runFailed);
    const printed = JSON.parse(result.stdout) as { runId: string; outcome: { kind: string; message: string } };
    expect(printed.runId).toBe('ended-run');
    expect(printed.outcome.kind).toBe('failed');
    expect(printed.outcome.message).toBe('Workflow execution terminated: given up by the operator');
  }, 60_000);

  it('still says plainly that a run does not exist', async () => {
    const result = await runCli(['status', 'never-started', '--address', server.address, '--server-wait', '0'], { timeoutMs: 60_000 });
    expect(result.code).toBe(EXIT.error);
    expect(result.stderr).toContain("no run 'never-started' (workflow timeshare-never-started) on this server");
  }, 60_000);
});
