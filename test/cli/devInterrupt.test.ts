/**
 * `timeshare dev` watching a run an operator paused, then interrupted (SIGINT, as Ctrl-C sends
 * it): it says how the paused run goes on, stops its workers and server, keeps the run, exits
 * 130, and says nothing of the server it stopped itself being unreachable. The pause is asked
 * while the run is held in its first train step (of two), so it lands after that iteration. Real
 * processes (`bin/timeshare`), a real Temporal dev server.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exitCodes';
import { freePort } from '../../src/process/ports';
import { holdTrainStep, writeHoldableConfig } from '../helpers/heldTrainStep';
import { alive, runCli, startCli } from '../helpers/processes';

describe('`dev` interrupted', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-dev-interrupt-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('says how a paused run goes on; interrupted, stops what it started and exits 130, without an outage line for the server it stopped', async () => {
    const runId = 'dev-interrupt';
    const config = writeHoldableConfig(dir, runId);
    const stateDir = path.join(dir, 'state');
    const port = await freePort();
    // Injected before dev starts: the first train step is the one held, however fast the rollout.
    const held = holdTrainStep(stateDir, runId, config);
    const dev = startCli(['dev', config, '--state-dir', stateDir, '--port', String(port), '--ui-port', String(await freePort())]);
    try {
      await dev.waitFor(/started run 'dev-interrupt'/, 240_000);
      const release = await held;
      const owned = Object.values(JSON.parse(readFileSync(path.join(stateDir, 'dev-processes.json'), 'utf8')) as Record<string, { pid: number }>).map(({ pid }) => pid);
      expect(owned.length).toBeGreaterThanOrEqual(3);
      const pause = await runCli(['pause', runId, '--address', `127.0.0.1:${port}`], { timeoutMs: 120_000 });
      expect(pause.code, pause.out).toBe(EXIT.ok);
      release();
      await dev.waitFor(/paused: 'timeshare resume dev-interrupt' goes on/, 240_000);
      dev.kill('SIGINT');
      expect(await dev.exited).toBe(EXIT.interrupted);
      expect(dev.output()).toContain('SIGINT: stopping workers and server. The run is kept');
      expect(dev.output()).not.toContain('server unreachable');
      expect(owned.filter(alive)).toEqual([]);
    } finally {
      dev.kill('SIGKILL');
    }
  }, 600_000);
});
