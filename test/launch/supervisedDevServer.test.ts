/**
 * `dev`'s server kept running: a killed server is started again, but one that dies again and
 * again soon after each start (its database or port held by another process) is given up after
 * five deaths in a row, where it used to be restarted forever; a server that lived past the
 * stable time starts the count again. Real dev servers, killed with SIGKILL.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SupervisedDevServer, type RestartPolicy } from '../../src/launch/supervisedDevServer';
import { freePort } from '../../src/process/ports';

const running: SupervisedDevServer[] = [];
afterEach(async () => {
  for (const server of running.splice(0)) await server.stop();
});

/** A supervised in-memory server whose every start is reported; restarts after 20 ms. */
async function supervised(stableMs: number): Promise<{ server: SupervisedDevServer; started: number[]; lines: string[] }> {
  const started: number[] = [];
  const lines: string[] = [];
  const restartPolicy: RestartPolicy = { delayMs: () => 20, stableMs };
  const server = await SupervisedDevServer.start({ port: await freePort('127.0.0.1'), headless: true, log: (line) => lines.push(line), onStart: (s) => started.push(s.pid), restartPolicy });
  running.push(server);
  return { server, started, lines };
}

/** Kills the current server and waits until it was started again (or given up on). */
async function killAndAwaitRestart(server: SupervisedDevServer, started: number[]): Promise<void> {
  const before = started.length;
  process.kill(server.current.pid, 'SIGKILL');
  const gaveUp = server.gaveUp.then(
    () => undefined,
    () => undefined,
  );
  for (;;) {
    if (started.length > before) return;
    const done = await Promise.race([gaveUp.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 50))]);
    if (done) return;
  }
}

describe('a supervised dev server', () => {
  it('gives up on a server that dies five times in a row soon after its start, saying so', async () => {
    const { server, started, lines } = await supervised(60_000);
    for (let death = 1; death <= 5; death++) await killAndAwaitRestart(server, started);
    expect(started).toHaveLength(6);
    expect(server.restarts).toBe(5);
    process.kill(server.current.pid, 'SIGKILL');
    await expect(server.gaveUp).rejects.toThrow(/the Temporal dev server died 6 times in a row, each within 60 s of its start \(last: code null, signal SIGKILL\); see its log /);
    expect(started).toHaveLength(6);
    expect(lines.filter((line) => line.includes('running again'))).toHaveLength(5);
  }, 120_000);

  it('starts the count again for a server that lived past the stable time', async () => {
    const { server, started } = await supervised(0);
    for (let death = 1; death <= 6; death++) await killAndAwaitRestart(server, started);
    expect(started).toHaveLength(7);
    const gaveUp = await Promise.race([server.gaveUp.then(() => true, () => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 200))]);
    expect(gaveUp).toBe(false);
  }, 120_000);
});
