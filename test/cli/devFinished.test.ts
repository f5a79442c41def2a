/**
 * `timeshare dev` as a user runs it, twice on the same state folder: the first starts its workers
 * together with its server (a fresh run) and finishes the run; the second, on the finished run,
 * answers from the run's close event without starting a worker.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/process/ports';
import { smallConfig } from '../helpers/pipeline';
import { runCli } from '../helpers/processes';

describe('timeshare dev: concurrent start, and a finished run answered without workers', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-dev-finished-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs to the end, then answers again at once without starting workers', async () => {
    const runId = 'dev-finished';
    const config = path.join(dir, `${runId}.json`);
    writeFileSync(config, JSON.stringify({ ...smallConfig(), run: { id: runId, iterations: 1 }, store: { dir: path.join(dir, 'store') } }));
    const stateDir = path.join(dir, 'state');
    const ports = async () => ['--port', String(await freePort()), '--ui-port', String(await freePort())];

    const first = await runCli(['dev', config, '--state-dir', stateDir, ...(await ports())], { timeoutMs: 300_000 });
    expect(first.code, first.out).toBe(0);
    const lines = first.stdout.split('\n');
    const spawned = lines.findIndex((line) => /^started \d+ workers/.test(line));
    const serverStart = lines.findIndex((line) => line.startsWith('starting Temporal dev server'));
    // A fresh state folder: the port was free, so the workers were spawned before the server start.
    expect(spawned, first.stdout).toBeGreaterThanOrEqual(0);
    expect(spawned, first.stdout).toBeLessThan(serverStart);
    expect(first.stdout).toContain(`started run '${runId}'`);
    expect(first.stdout).toMatch(new RegExp(`run '${runId}' finished: 1 iterations`));

    const again = await runCli(['dev', config, '--state-dir', stateDir, ...(await ports())], { timeoutMs: 300_000 });
    expect(again.code, again.out).toBe(0);
    expect(again.stdout).toContain(`run '${runId}' already finished`);
    expect(again.stdout).not.toMatch(/started \d+ workers/);
  });
});
