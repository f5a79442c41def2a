/**
 * An environment server the gpu-node worker runs itself (servers[].command): started on first
 * use, killed mid-episode (SIGKILL, a crash), restarted by the supervisor; the deterministic
 * episode is re-created on the restarted server and its recorded actions replayed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../src/process/ports';
import { createOpenEnvEnvironment, type OpenEnvEnvironment } from '../../../src/engines/openenv';
import { OPENENV_ENV_DIR } from '../../../src/engines/openenv/launch';
import { referencePython } from '../../../src/engines/reference/launch';
import { AGENT_MODEL_CONFIG, answerId, EOS, id, openEnvConfig } from './helpers';

describe('supervised environment server', () => {
  let env: OpenEnvEnvironment | undefined;
  afterAll(async () => {
    env?.close();
    await env?.stopServers();
  });

  it('is started by the worker, restarted after a crash mid-episode, and the episode replays', { timeout: 300_000 }, async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const config = openEnvConfig([], {
      servers: [{ url, command: [referencePython(), '-m', 'timeshare_openenv', '--port', String(port)], cwd: OPENENV_ENV_DIR }],
      tokenizer: { kind: 'file', path: AGENT_MODEL_CONFIG },
      retries: 2,
    });
    env = createOpenEnvEnvironment(config, { kind: 'simulated' }, [], { superviseOnNode: 0 });
    const promptIds = await env.promptIds(5);
    const outs = [[answerId(promptIds[0]!), EOS]];
    const first = await env.step(5, 0, 2, undefined, outs, { promptIds, observationIds: [] });
    expect(first.observationIds?.[0]).toBe(id('+'));
    const [server] = env.supervisedServers();
    const pid = server?.pid;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid!, 'SIGKILL');
    // Turn 1: the session died with the server; the supervisor restarts it and the episode is replayed there.
    const next = [...outs, [answerId(first.observationIds!.at(-1)!), EOS]];
    const second = await env.step(5, 1, 2, undefined, next, { promptIds, observationIds: [first.observationIds!] });
    expect(second.observationIds?.[0]).toBe(id('+'));
    expect(server?.restarts).toBeGreaterThanOrEqual(1);
    expect(server?.pid).not.toBe(pid);
  });
});
