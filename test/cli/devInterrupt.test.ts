/**
 * `timeshare dev` interrupted (SIGINT, as Ctrl-C sends it) while its run is held in a train step:
 * it stops its workers and server, keeps the run, exits 130, and says nothing of the server it
 * stopped itself being unreachable. Real processes (`bin/timeshare`), a real Temporal dev server.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exitCodes';
import { freePort } from '../../src/process/ports';
import { holdTrainStep, writeHoldableConfig } from '../helpers/heldTrainStep';
import { alive, startCli } from '../helpers/processes';

describe('`dev` interrupted', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-dev-interrupt-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stops what it started and exits 130, without an outage line for the server it stopped', async () => {
    const runId = 'dev-interrupt';
    const config = writeHoldableConfig(dir, runId);
    const stateDir = path.join(dir, 'state');
    const dev = startCli(['dev', config, '--state-dir', stateDir, '--port', String(await freePort()), '--ui-port', String(await freePort())]);
    try {
      await dev.waitFor(/started run 'dev-interrupt'/, 240_000);
      const release = await holdTrainStep(stateDir, runId, config);
      const owned = Object.values(JSON.parse(readFileSync(path.join(stateDir, 'dev-processes.json'), 'utf8')) as Record<string, { pid: number }>).map(({ pid }) => pid);
      expect(owned.length).toBeGreaterThanOrEqual(3);
      dev.kill('SIGINT');
      expect(await dev.exited).toBe(EXIT.interrupted);
      release();
      expect(dev.output()).toContain('SIGINT: stopping workers and server. The run is kept');
      expect(dev.output()).not.toContain('server unreachable');
      expect(owned.filter(alive)).toEqual([]);
    } finally {
      dev.kill('SIGKILL');
    }
  }, 600_000);
});
