/**
 * Spare files for atomic writes. A write used to go into a new temp file renamed over the file it
 * replaces: one inode allocated and one freed per write. On ext4 without a journal each
 * allocation skips every inode freed in the last 30 s, reading its inode-table block
 * (`recently_deleted`), and each freed block is discarded synchronously where the file system is
 * mounted with `discard`: with a checkpoint per turn, a third of the worker's CPU went there
 * (docs/benchmarks.md, "Inodes kept"). Instead the inode a write replaces is kept under a hidden
 * name beside it, and the next write in that folder goes into it.
 *
 * Invariant: a spare has no other name. It is checked (link count 1) before each reuse, so a
 * second name of a live file (left by a crash between the link and the rename that replaces it,
 * or by two processes keeping the same replaced file) is never written into. Spares are named as
 * temp files (`.spare.<pid>.<random><n>.tmp`: every listing of the store skips them); this
 * process's are removed when it exits, a killed process's stay as stray temp files do.
 */
import { closeSync, promises as fs, fstatSync, ftruncateSync, linkSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errnoCode, uniqueSuffix } from './basics';

/** Spares kept per folder: about the writes in flight there at once. */
const MAX_SPARES_PER_DIR = 64;

const pools = new Map<string, string[]>();
let cleanupRegistered = false;

/** A fresh name in `dir` for a temp file or a spare (a temp file's name: listings skip it). */
export function spareName(dir: string): string {
  return join(dir, `.spare.${uniqueSuffix()}.tmp`);
}

function removeAll(): void {
  for (const pool of pools.values()) for (const spare of pool) rmSync(spare, { force: true });
  pools.clear();
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

export interface Spare {
  path: string;
  /** Open for writing (no O_TRUNC: cutting a file frees its blocks); the caller closes it. */
  fd: number;
  /** Its size before this write: what is left past the new data is cut. */
  size: number;
}

/**
 * A spare of `dir` opened for writing, or undefined if the folder has none. Synchronous: an open
 * of an existing file and an fstat, microseconds each, where each trip through libuv's thread
 * pool queues behind the store's fsyncs.
 */
export function takeSpare(dir: string): Spare | undefined {
  const pool = pools.get(dir);
  for (let path = pool?.pop(); path !== undefined; path = pool?.pop()) {
    let fd: number;
    try {
      fd = openSync(path, 'r+');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // removed from under us (its folder cleaned)
      throw err;
    }
    const stat = fstatSync(fd);
    if (stat.nlink === 1) return { path, fd, size: stat.size };
    // Another name holds it too: drop ours, never write into it.
    closeSync(fd);
    rmSync(path, { force: true });
  }
  return undefined;
}

/**
 * Pools `spare` (a name retainReplaced made, once the file it named was replaced, or a removed
 * file renamed by retireAsSpare). False when the folder's pool is full: the caller removes it.
 */
export function poolSpare(dir: string, spare: string): boolean {
  const pool = poolOf(dir);
  if (pool.length >= MAX_SPARES_PER_DIR) return false;
  pool.push(spare);
  return true;
}

/**
 * Gives the file at `path`, about to be replaced, a spare's name (a hard link): the replacement
 * then frees no inode. Returns the name, or undefined when `path` does not exist. Until the
 * replacement succeeded it is a second name of the live file: pool it only after, and remove it
 * if the replacement failed.
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

function retainReplacedSync(dir: string, path: string): string | undefined {
  const spare = spareName(dir);
  try {
    linkSync(path, spare);
    return spare;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Removes `path` from its folder by renaming it to a spare (no inode freed); false when the
 * folder's pool is full (the caller unlinks it). Throws ENOENT when `path` does not exist.
 */
export async function retireAsSpare(dir: string, path: string): Promise<boolean> {
  if (poolOf(dir).length >= MAX_SPARES_PER_DIR) return false;
  const spare = spareName(dir);
  await fs.rename(path, spare);
  if (!poolSpare(dir, spare)) await fs.rm(spare, { force: true }); // filled meanwhile
  return true;
}

/**
 * Replaces `path` with `data` atomically, synchronously and without fsync (state a process keeps
 * across its own restarts: the simulated engines' state files): written into a spare of the
 * folder (else a new temp file) and renamed over `path`, whose inode becomes the next spare.
 */
export function replaceFileSync(path: string, data: string): void {
  const dir = dirname(path);
  const spare = takeSpare(dir);
  const tmp = spare?.path ?? spareName(dir);
  const fd = spare?.fd ?? openSync(tmp, 'wx', 0o644);
  try {
    const bytes = Buffer.from(data, 'utf8');
    writeFileSync(fd, bytes);
    if (spare !== undefined && spare.size > bytes.length) ftruncateSync(fd, bytes.length);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  let replaced: string | undefined;
  try {
    replaced = retainReplacedSync(dir, path);
    renameSync(tmp, path);
  } catch (err) {
    if (replaced !== undefined) rmSync(replaced, { force: true });
    rmSync(tmp, { force: true });
    throw err;
  }
  if (replaced !== undefined && !poolSpare(dir, replaced)) rmSync(replaced, { force: true });
}
