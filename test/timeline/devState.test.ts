/**
 * The path a new user takes: `timeshare dev` runs to the end (and stops its server), then
 * `timeshare timeline <run-id> --state-dir` reads the run from the dev database. Real processes.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/process/ports';
import { parseTimelines } from '../../src/timeline/schema';
import { smallConfig } from '../helpers/pipeline';
import { runCli } from '../helpers/processes';

const cli = (args: string[]) => runCli(args);

describe('timeshare timeline --state-dir after timeshare dev', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-timeline-dev-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('charts the finished dev run from its state folder', async () => {
    const runId = 'timeline-dev';
    const config = path.join(dir, `${runId}.yaml`);
    writeFileSync(config, stringify(smallConfig({ run: { id: runId, iterations: 1 }, store: { dir: path.join(dir, 'store') } })));
    const stateDir = path.join(dir, 'state');
    const dev = await cli(['dev', config, '--state-dir', stateDir, '--port', String(await freePort()), '--ui-port', String(await freePort())]);
    expect(dev.stdout).toContain(`run '${runId}' finished`);
    expect(dev.code).toBe(0);

    const out = path.join(dir, 'charts');
    const chart = await cli(['timeline', runId, '--state-dir', stateDir, '--out', out]);
    expect(chart.stderr).toBe('');
    expect(chart.code).toBe(0);
    expect(chart.stdout).toContain(path.join(out, `${runId}-timeline.png`));
    const [timeline] = parseTimelines(JSON.parse(readFileSync(path.join(out, `${runId}-timeline.json`), 'utf8')), 'written timeline');
    expect(timeline?.lanes).toHaveLength(4);
    expect(timeline?.segments.filter((segment) => segment.role === 'train').map((segment) => segment.lane)).toEqual(['rank 0 · GPU 0', 'rank 1 · GPU 1']);

    // While `timeshare dev` owns the folder (its process file is there), it is not opened twice.
    writeFileSync(path.join(stateDir, 'dev-processes.json'), '[]');
    const busy = await cli(['timeline', runId, '--state-dir', stateDir, '--out', out]);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain("'timeshare dev' is running on");
    const empty = await cli(['timeline', runId, '--state-dir', path.join(dir, 'nothing-here'), '--out', out]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("no 'timeshare dev' state in");
  });
});
