/**
 * The store's atomic writes keep the inode they replace and write the next file into it
 * (src/files/spareFiles.ts); its lock files and superseded flags are links to a file of the
 * process's (src/files/linkedFiles.ts). Inode numbers tell whether a file was reused.
 */
import { link, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { replaceFileSync } from '../../src/files/spareFiles';
import { withFileLock } from '../../src/store/fileLock';
import { atomicWrite, createExclusive, isTempName, removeIfExists } from '../../src/store/fsUtil';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'spares-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ino = async (path: string): Promise<number> => (await stat(path)).ino;
const hidden = async (): Promise<string[]> => (await readdir(dir)).filter((name) => name.startsWith('.'));

describe('atomic writes keep the inode they replace', () => {
  it('the next write goes into the replaced file, its older longer content cut', async () => {
    const a = join(dir, 'a.json');
    await atomicWrite(a, 'first version, the longest of the three');
    const first = await ino(a);
    await atomicWrite(a, 'second');
    expect(await readFile(a, 'utf8')).toBe('second');
    // The first version's inode is now a spare (a temp name every listing skips)...
    const spares = await hidden();
    expect(spares).toHaveLength(1);
    expect(isTempName(spares[0]!)).toBe(true);
    expect(await ino(join(dir, spares[0]!))).toBe(first);
    // ... and the next write, to any file of the folder, goes into it.
    const b = join(dir, 'b.json');
    await atomicWrite(b, 'third');
    expect(await ino(b)).toBe(first);
    expect(await readFile(b, 'utf8')).toBe('third');
    expect(await readFile(a, 'utf8')).toBe('second');
  });

  it('never writes into a spare that has another name (a live file left linked by a crash)', async () => {
    const a = join(dir, 'a.json');
    await atomicWrite(a, 'v1');
    await atomicWrite(a, 'v2');
    const [spare] = await hidden();
    const survivor = join(dir, 'survivor.json');
    await link(join(dir, spare!), survivor);
    await atomicWrite(join(dir, 'b.json'), 'must not land in the survivor');
    expect(await readFile(survivor, 'utf8')).toBe('v1');
    expect(await ino(join(dir, 'b.json'))).not.toBe(await ino(survivor));
    // The shared spare's name was dropped, not reused.
    expect(await readdir(dir)).not.toContain(spare);
  });

  it('a removed file becomes a spare, and a file created exclusively reuses it', async () => {
    const marker = join(dir, '7');
    await atomicWrite(marker, '{"id":7}');
    const removed = await ino(marker);
    expect(await removeIfExists(marker)).toBe(true);
    expect(await removeIfExists(marker)).toBe(false);
    expect((await readdir(dir)).filter((name) => !isTempName(name))).toEqual([]);
    const created = join(dir, '8');
    expect(await createExclusive(created, '{"id":8}')).toBe(true);
    expect(await ino(created)).toBe(removed);
    expect(await readFile(created, 'utf8')).toBe('{"id":8}');
    // Linked, then the spare's name removed: the new file has no second name.
    expect((await stat(created)).nlink).toBe(1);
    expect(await createExclusive(created, 'other')).toBe(false);
    expect(await readFile(created, 'utf8')).toBe('{"id":8}');
  });
});

describe('synchronous replaces (the simulated engines’ state files)', () => {
  it('keep the inode they replace as atomicWrite does, and share the folder’s spares with it', async () => {
    const state = join(dir, 'engine.json');
    replaceFileSync(state, '{"weightVersion":1,"resident":["weights","kv_cache"]}');
    const first = await ino(state);
    replaceFileSync(state, '{"weightVersion":2}');
    expect(await readFile(state, 'utf8')).toBe('{"weightVersion":2}');
    await atomicWrite(join(dir, 'other.json'), 'async');
    expect(await ino(join(dir, 'other.json'))).toBe(first);
    await atomicWrite(join(dir, 'other.json'), 'async again');
    replaceFileSync(state, '{"weightVersion":3}');
    expect(await readFile(state, 'utf8')).toBe('{"weightVersion":3}');
    expect(await readFile(join(dir, 'other.json'), 'utf8')).toBe('async again');
  });
});

describe('lock files are links to the holder’s file', () => {
  it('say the holder’s pid and host, and leave no lock behind', async () => {
    const lock = join(dir, 'x.lock');
    const inside = await withFileLock(lock, { staleMs: 60_000, timeoutMs: 1_000 }, async () => JSON.parse(await readFile(lock, 'utf8')) as { pid: number });
    expect(inside.pid).toBe(process.pid);
    expect(await readdir(dir)).not.toContain('x.lock');
  });

  it('a lock taken by a long-lived holder does not look stale to others: its age is its holder’s last lock', async () => {
    const options = { staleMs: 60_000, timeoutMs: 1_000 };
    await withFileLock(join(dir, 'first.lock'), options, async () => undefined);
    const [holder] = (await hidden()).filter((name) => name.startsWith('.lock-holder.'));
    const old = new Date(Date.now() - 10 * 60_000);
    await utimes(join(dir, holder!), old, old);
    const ageMs = await withFileLock(join(dir, 'second.lock'), options, async () => Date.now() - (await stat(join(dir, 'second.lock'))).mtimeMs);
    expect(ageMs).toBeLessThan(options.staleMs);
  });

  it('a holder file removed from under the process is made again', async () => {
    const options = { staleMs: 60_000, timeoutMs: 1_000 };
    await withFileLock(join(dir, 'a.lock'), options, async () => undefined);
    for (const name of await hidden()) await rm(join(dir, name));
    expect(await withFileLock(join(dir, 'b.lock'), options, async () => 'held')).toBe('held');
  });

  it('a plain lock file (an earlier store’s) still excludes', async () => {
    const lock = join(dir, 'plain.lock');
    await writeFile(lock, JSON.stringify({ pid: process.pid, host: 'some-other-host', token: 't', acquiredAtMs: Date.now() }));
    await expect(withFileLock(lock, { staleMs: 60_000, timeoutMs: 100 }, async () => 'no')).rejects.toThrow(/lock/i);
    expect(await readFile(lock, 'utf8')).toContain('some-other-host');
  });
});
