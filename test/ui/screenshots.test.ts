/**
 * The Temporal UI tells the story of a run, and the README's pictures of it stay true: a short
 * `timeshare dev --keep-ui` run, then headless Chromium opens the UI it serves, checks that the
 * run's workflows and an iteration's activities are on the pages, and takes the screenshots the
 * README shows: into the test's temp folder, or over docs/img/ui-*.png with
 * TIMESHARE_UPDATE_SCREENSHOTS=1 (so `npm test` leaves the checkout's tree as it was). Real CLI,
 * real dev server and UI, real browser.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exitCodes';
import { iterationWorkflowId, runWorkflowId } from '../../src/contract/naming';
import { freePort } from '../../src/process/ports';
import { renderedDom, screenshot } from '../helpers/chromium';
import { smallConfig } from '../helpers/pipeline';
import { startDevOnFreePorts, type Proc } from '../helpers/processes';

const README_IMG = path.join(__dirname, '..', '..', 'docs', 'img');
const RUN = 'ui-tour';

describe('Temporal UI of a dev run (headless Chromium)', () => {
  let dir: string;
  let dev: Proc | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-ui-'));
  });
  afterAll(async () => {
    // Its server may still be writing into the state folder until the process has exited.
    if (dev !== undefined) {
      dev.kill('SIGKILL');
      await dev.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the run and an iteration with its activities; takes the README screenshots', async () => {
    const config = path.join(dir, `${RUN}.json`);
    writeFileSync(config, JSON.stringify(smallConfig({ run: { id: RUN, iterations: 2 }, store: { dir: path.join(dir, 'store') } })));
    const started = await startDevOnFreePorts(
      async () => ['dev', config, '--state-dir', path.join(dir, 'state'), '--port', String(await freePort()), '--ui-port', String(await freePort()), '--keep-ui'],
      /keeping the Temporal server and its UI/,
      400_000,
    );
    dev = started.proc;
    const [port, uiPort] = [started.args[5], started.args[7]];
    expect(dev.output()).toContain(`run '${RUN}' finished: 2 iterations, weights v2`);

    const ui = `http://127.0.0.1:${uiPort}/namespaces/default/workflows`;
    const client = new Client({ connection: await Connection.connect({ address: `127.0.0.1:${port}` }) });
    const iteration = iterationWorkflowId(RUN, 1);
    const { runId: iterationRunId } = await client.workflow.getHandle(iteration).describe();
    await client.connection.close();

    const list = `${ui}?query=${encodeURIComponent(`TimeshareRunId="${RUN}"`)}`;
    const listDom = await renderedDom(list);
    for (const id of [runWorkflowId(RUN), iterationWorkflowId(RUN, 0), iteration]) expect(listDom).toContain(id);

    const timeline = `${ui}/${iteration}/${iterationRunId}/timeline`;
    const timelineDom = await renderedDom(timeline);
    expect(timelineDom).toContain(iteration);
    // Activity rows of the iteration's phases.
    for (const activity of ['runRolloutShards', 'trainStep', 'syncAndReloadNode']) expect(timelineDom).toContain(activity);

    const history = `${ui}/${iteration}/${iterationRunId}/history`;
    const historyDom = await renderedDom(history);
    expect(historyDom).toContain('Workflow Execution Completed');
    expect(historyDom).toContain('Activity Task Completed');

    const img = process.env['TIMESHARE_UPDATE_SCREENSHOTS'] === '1' ? README_IMG : path.join(dir, 'img');
    mkdirSync(img, { recursive: true });
    await screenshot(list, path.join(img, 'ui-workflows.png'), { width: 1400, height: 700 });
    await screenshot(timeline, path.join(img, 'ui-iteration-timeline.png'), { width: 1400, height: 1300 });
    await screenshot(history, path.join(img, 'ui-iteration-history.png'), { width: 1400, height: 1200 });

    dev.kill('SIGINT');
    expect(await dev.exited).toBe(EXIT.ok);
  }, 900_000);
});
