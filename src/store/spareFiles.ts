/**
 * Spare files for the store's atomic writes. A write used to go into a new temp file renamed over
 * the file it replaces: one inode allocated and one freed per write. On ext4 without a journal
 * each allocation skips every inode freed in the last 30 s, reading its inode-table block
 * (`recently_deleted`), and each freed block is discarded synchronously where the file system is
 * mounted with `discard`: with a checkpoint per turn, a third of the worker's CPU went there
 * (docs/benchmarks.md, "Inodes kept"). Instead the inode a write replaces is kept under a hidden
 * name beside it, and the next write in that folder goes into it.
 *
 * Invariant: a spare has no other name. It is checked (link count 1) before each reuse, so a
 * second name of a live file (left by a crash between the link and the rename that replaces it,
 * or by two processes keeping the same replaced file) is never written into. Spares are named as
 * temp files (`.spare.<pid>.<random><n>.tmp`: every listing skips them); this process's are
 * removed when it exits, a killed process's stay as stray temp files do.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, fstatSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode } from './errno';

/** Spares kept per folder: about the writes in flight there at once. */
const MAX_SPARES_PER_DIR = 64;

const pools = new Map<string, string[]>();
const processUnique = randomBytes(6).toString('hex');
let serial = 0;
let cleanupRegistered = false;

function spareName(dir: string): string {
  serial += 1;
  return join(dir, `.spare.${process.pid}.${processUnique}${serial.toString(36)}.tmp`);
}

function removeAll(): void {
  for (const pool of pools.values()) for (const spare of pool) rmSync(spare, { force: true });
  pools.clear();
}

export interface Spare {
  path: string;
  handle: fs.FileHandle;
  /** Its size before this write: what is left past the new data is cut. */
  size: number;
}

/** A spare of `dir` opened for writing, or undefined if the folder has none. */
export async function takeSpare(dir: string): Promise<Spare | undefined> {
  const pool = pools.get(dir);
  for (let path = pool?.pop(); path !== undefined; path = pool?.pop()) {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(path, 'r+');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // removed from under us (its folder cleaned)
      throw err;
    }
    const stat = fstatSync(handle.fd);
    if (stat.nlink === 1) return { path, handle, size: stat.size };
    // Another name holds it too: drop ours, never write into it.
    await handle.close();
    await fs.rm(path, { force: true });
  }
  return undefined;
}

/**
 * Gives the file at `path`, about to be replaced, a spare's name (a hard link): the replacement
 * then frees no inode. Returns the name, or undefined when `path` does not exist. Until the
 * replacement succeeded it is a second name of the live file: pass it to `keepSpare` after, or
 * to `dropSpare` if the replacement failed.
 */
export async function retainReplaced(dir: string, path: string): Promise<string | undefined> {
  const spare = spareName(dir);
  try {
    await fs.link(path, spare);
    return spare;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function poolOf(dir: string): string[] {
  let pool = pools.get(dir);
  if (pool === undefined) {
    pool = [];
    pools.set(dir, pool);
  }
  if (!cleanupRegistered) {
    process.once('exit', removeAll);
    cleanupRegistered = true;
  }
  return pool;
}

/** Pools a spare made by retainReplaced once the file it named was replaced. */
export async function keepSpare(dir: string, spare: string): Promise<void> {
  const pool = poolOf(dir);
  if (pool.length < MAX_SPARES_PER_DIR) pool.push(spare);
  else await fs.rm(spare, { force: true });
}

/**
 * Removes `path` from its folder by renaming it to a spare (no inode freed); false when the
 * folder's pool is full (the caller unlinks it). Throws ENOENT when `path` does not exist.
 */
export async function retireAsSpare(dir: string, path: string): Promise<boolean> {
  const pool = poolOf(dir);
  if (pool.length >= MAX_SPARES_PER_DIR) return false;
  const spare = spareName(dir);
  await fs.rename(path, spare);
  pool.push(spare);
  return true;
}

/** Removes a spare name that must not be pooled (its replacement failed: it names a live file). */
export async function dropSpare(spare: string): Promise<void> {
  await fs.rm(spare, { force: true });
}
