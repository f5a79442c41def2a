/** The `timeshare` command as a user runs it: the real bin/timeshare in a child process. */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/process/ports';
import { runCli } from '../helpers/processes';

const run = (args: string[], cwd?: string) => runCli(args, cwd === undefined ? { timeoutMs: 60_000 } : { cwd, timeoutMs: 60_000 });

describe('timeshare CLI', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a bad config naming every broken field, exit 2, and starts nothing', async () => {
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'pool: { nodes: 1, gpusPerNode: 0 }\nstrategy: multiplexed\ntrain: { gpus: [0] }\nbatchSize: 8\ntrainBatch: 3\n');
    const stateDir = path.join(dir, 'state');
    const dev = await run(['dev', bad, '--state-dir', stateDir, '--port', String(await freePort())], dir);
    expect(dev.code).toBe(2);
    expect(dev.stderr).toContain('Invalid run configuration');
    expect(dev.stderr).toContain('pool.gpusPerNode');
    expect(dev.stderr).toContain('trainBatch: unknown key');
    expect(existsSync(stateDir)).toBe(false);

    const check = await run(['check-config', bad]);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain('pool.gpusPerNode');
  });

  it('check-config prints the layout of a valid config', async () => {
    const result = await run(['check-config', path.join(__dirname, '..', '..', 'examples', 'multiplexed.yaml')]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('released at shrink: ranks 0-3');
  });

  it('says clearly when the server is unreachable', async () => {
    const result = await run(['status', 'some-run', '--address', `127.0.0.1:${await freePort()}`, '--server-wait', '1']);
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/server unreachable at .*, retrying for up to 1 s/);
    expect(result.stderr).toContain('cannot reach the Temporal server');
  });

  // One test per command: each CLI start gets the whole test timeout, however busy the machine.
  const commands = [[], ['dev'], ['start'], ['status'], ['pause'], ['resume'], ['stop'], ['set-batch-size'], ['set-shrink-set'], ['return-ranks'], ['chaos'], ['worker', 'orchestrator'], ['worker', 'gpu-node'], ['check-config'], ['timeline'], ['bench']];
  it.each(commands.map((command) => [command.join(' ') || '(none)', command] as const))('has --help: %s', async (name, command) => {
    const result = await run([...command, '--help']);
    expect(result.code, name).toBe(0);
    expect(result.stdout, name).toContain('Usage: timeshare');
  });

  it('chaos refuses unknown fault kinds or phases before starting anything, exit 2', async () => {
    const stateDir = path.join(dir, 'chaos');
    const kinds = await run(['chaos', '--kinds', 'server-kill,meltdown', '--state-dir', stateDir]);
    expect(kinds.code).toBe(2);
    expect(kinds.stderr).toContain('--kinds: unknown meltdown');
    const phases = await run(['chaos', '--phases', 'train,lunch', '--state-dir', stateDir]);
    expect(phases.code).toBe(2);
    expect(phases.stderr).toContain('--phases: unknown lunch');
    expect(existsSync(stateDir)).toBe(false);
    const ranks = await run(['return-ranks', 'r', '3,x']);
    expect(ranks.code).toBe(2);
    expect(ranks.stderr).toContain('rank ids must be a decimal integer');
  });

  it('rejects a bad argument with usage, exit 2', async () => {
    const result = await run(['set-batch-size', 'r', 'zero']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('batch size must be a decimal integer');
  });
});
