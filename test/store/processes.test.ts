/**
 * Locks and crashes across real processes: mutual exclusion between processes, locks left by a
 * SIGKILLed process, and a process killed in the middle of checkpointing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, readdir, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockTimeoutError } from '../../src/store';
import { withFileLock } from '../../src/store/fileLock';
import { sample, tempStore, type TempStore } from './helpers';

const TSX = resolve(__dirname, '../../node_modules/.bin/tsx');
const WORKER = resolve(__dirname, 'fixtures/storeWorker.ts');

function startWorker(args: string[]): ChildProcess {
  return spawn(TSX, [WORKER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolvePromise) => child.on('exit', (code, signal) => resolvePromise({ code, signal, stderr })));
}

let t: TempStore;
beforeEach(async () => {
  t = await tempStore();
});
afterEach(async () => {
  await t.cleanup();
});

describe('file locks', () => {
  it('exclude each other across processes', async () => {
    const lock = join(t.root, 'counter.lock');
    const counter = join(t.root, 'counter');
    await writeFile(counter, '0');
    const children = [0, 1, 2].map(() => startWorker(['increment', lock, counter, '40']));
    const results = await Promise.all(children.map(exited));
    for (const r of results) expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(await readFile(counter, 'utf8')).toBe('120');
    // Their lock holders and spare files went with them.
    expect((await readdir(t.root)).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('a lock left by a dead process on this host is broken at once', async () => {
    const lock = join(t.root, 'dead.lock');
    // A pid that cannot be alive: beyond the kernel's pid_max.
    await writeFile(lock, JSON.stringify({ pid: 2 ** 30, host: hostname(), token: 'x', acquiredAtMs: Date.now() }));
    const started = Date.now();
    expect(await withFileLock(lock, { staleMs: 60_000, timeoutMs: 5_000 }, async () => 'got it')).toBe('got it');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('a lock from another host is broken only once stale; a live lock times out', async () => {
    const lock = join(t.root, 'remote.lock');
    await writeFile(lock, JSON.stringify({ pid: 1, host: 'some-other-host', token: 'x', acquiredAtMs: Date.now() }));
    await expect(withFileLock(lock, { staleMs: 60_000, timeoutMs: 200 }, async () => 'no')).rejects.toThrow(LockTimeoutError);
    const old = new Date(Date.now() - 120_000);
    await utimes(lock, old, old);
    expect(await withFileLock(lock, { staleMs: 60_000, timeoutMs: 200 }, async () => 'yes')).toBe('yes');
    expect(await readdir(t.root)).not.toContain('remote.lock');
  });

  it('serialises waiters within one process and releases on errors', async () => {
    const lock = join(t.root, 'local.lock');
    let inside = 0;
    let maxInside = 0;
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        withFileLock(lock, { staleMs: 60_000, timeoutMs: 10_000 }, async () => {
          inside += 1;
          maxInside = Math.max(maxInside, inside);
          await new Promise((r) => setTimeout(r, 1));
          inside -= 1;
          if (i % 5 === 0) throw new Error(`boom ${i}`);
          return i;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(4);
    expect(await readdir(t.root)).not.toContain('local.lock');
  });
});

describe('a process SIGKILLed while checkpointing', () => {
  it('leaves every sample readable and its locks recoverable', async () => {
    const { store, root } = t;
    const ids = [1, 2, 3, 4, 5, 6];
    await store.createSamples(ids.map((id) => sample(id)));
    await store.claim(ids, 'shard-a');
    const child = startWorker(['checkpoint', root, 'run-1', 'shard-a', ...ids.map(String)]);
    const done = exited(child);
    // Let it write for a while, then kill it without warning.
    await new Promise<void>((resolvePromise, reject) => {
      child.stdout?.once('data', () => resolvePromise());
      child.once('exit', () => reject(new Error('worker exited early')));
    });
    for (let i = 0; i < 200; i++) {
      const records = await store.readSamples(ids);
      if (records.every((r) => r.turns.length >= 3)) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');

    // Every file is whole (old or new version), progress survived, nothing is corrupt.
    const records = await store.readSamples(ids);
    for (const r of records) {
      expect(r.turns.length).toBeGreaterThanOrEqual(3);
      expect(r.owner).toBe('shard-a');
    }
    // Re-shard: a lock the dead process may still hold is broken, and the new shard proceeds.
    await store.claim(ids, 'shard-b');
    for (const id of ids) await store.markCompleted(id, 'shard-b', 1, 100 + id);
    expect(await store.listCompleted(ids)).toEqual(ids);
    await store.sealBatch(0, 0, ids, 200);
    expect((await store.audit({ admittedIds: ids, requireSettled: true })).violations).toEqual([]);
  });
});
