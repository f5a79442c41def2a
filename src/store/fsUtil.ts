/**
 * Crash-safe file primitives for the trajectory store.
 *
 * - atomicWrite: temp file in the same directory + fsync + rename (+ directory fsync). A reader
 *   sees the old contents or the new ones, never a torn file; a SIGKILL mid-write leaves at most
 *   a stray temp file (hidden name, ignored by every listing).
 * - createExclusive: same, but link() instead of rename(), so an existing file is never replaced
 *   (atomic "create if absent", also across processes and hosts sharing the file system).
 * - Lock files: fileLock.ts.
 *
 * Reads are synchronous calls of a few microseconds each on a local file system;
 * as asynchronous calls each took trips through libuv's thread pool (4 threads) and queued behind
 * every concurrent fsync: under load, the reads of a batch the workflow waited for took seconds.
 * Writes stay asynchronous: their fsyncs take milliseconds, and the pool runs them beside the
 * event loop.
 */
import { closeSync, fsync, ftruncate, open, promises as fs, readFileSync, write } from 'node:fs';
import { promisify } from 'node:util';
import { basename, dirname, join } from 'node:path';
import { errnoCode, fileExists, uniqueSuffix } from '../files/basics';
import { poolSpare, retainReplaced, retireAsSpare, takeSpare } from '../files/spareFiles';

export { errnoCode, fileExists };

/** Temp files start with '.' and end with '.tmp', so listings that match `^\d+` skip them. */
export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith('.tmp');
}


function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${uniqueSuffix()}.tmp`);
}

/**
 * Directory fsyncs in flight or queued, per directory. Concurrent writers in one directory (a
 * shard checkpointing its samples, the batch's marking, an admission) share one fsync instead of
 * queueing one each behind the file system's journal: each caller still returns only after an
 * fsync that began after its call, so what it renamed, linked or unlinked before is durable.
 */
const dirSyncs = new Map<string, { running?: Promise<void>; queued?: Promise<void> }>();

export function fsyncDir(dir: string): Promise<void> {
  const state = dirSyncs.get(dir) ?? {};
  dirSyncs.set(dir, state);
  if (state.queued !== undefined) return state.queued;
  if (state.running === undefined) return startDirSync(dir, state);
  // One is running, begun before this call: the next one (shared by everyone who asks meanwhile) starts when it ends.
  state.queued = state.running.then(
    () => undefined,
    () => undefined,
  ).then(() => {
    state.queued = undefined;
    return startDirSync(dir, state);
  });
  return state.queued;
}

function startDirSync(dir: string, state: { running?: Promise<void>; queued?: Promise<void> }): Promise<void> {
  const running = syncDirNow(dir).finally(() => {
    if (state.running === running) state.running = undefined;
    if (state.running === undefined && state.queued === undefined && dirSyncs.get(dir) === state) dirSyncs.delete(dir);
  });
  state.running = running;
  return running;
}

async function syncDirNow(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch (err) {
    // Some platforms / file systems cannot fsync a directory; the rename is still atomic.
    const code = errnoCode(err);
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw err;
  } finally {
    await handle?.close();
  }
}

/** A store folder is gone (deleted under a running run): names the folder, keeps code ENOENT. */
export class MissingDirectoryError extends Error {
  readonly code = 'ENOENT';
  constructor(
    readonly dir: string,
    file: string,
  ) {
    super(`store directory ${dir} is missing (deleted?): cannot write ${basename(file)} there; restore the folder (or the store) and resume`);
    this.name = 'MissingDirectoryError';
  }
}

const openFile = promisify(open);
const fsyncFile = promisify(fsync);
const truncateFile = promisify(ftruncate);

function writeAll(fd: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const from = (offset: number): void =>
      write(fd, bytes, offset, bytes.length - offset, offset, (err, written) => {
        if (err) reject(err);
        else if (offset + written < bytes.length) from(offset + written);
        else resolve();
      });
    from(0);
  });
}

/** Writes `data` into a spare of the folder (src/files/spareFiles.ts), or a new temp file; returns its path. */
async function writeTemp(path: string, data: string, sync: boolean): Promise<string> {
  const dir = dirname(path);
  const spare = takeSpare(dir);
  const tmp = spare?.path ?? tempPathFor(path);
  let fd: number;
  try {
    fd = spare?.fd ?? (await openFile(tmp, 'wx', 0o644));
  } catch (err) {
    // ENOENT on a fresh temp name means its folder is gone: say which, not the temp file's name.
    if (errnoCode(err) === 'ENOENT') throw new MissingDirectoryError(dir, path);
    throw err;
  }
  try {
    const bytes = Buffer.from(data, 'utf8');
    await writeAll(fd, bytes);
    // A spare's older, longer content is cut (never to zero first: that frees its blocks).
    if (spare !== undefined && spare.size > bytes.length) await truncateFile(fd, bytes.length);
    if (sync) await fsyncFile(fd);
  } catch (err) {
    closeSync(fd);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  return tmp;
}

/** Replaces `path` atomically with `data`; the file replaced becomes the folder's next spare. */
export async function atomicWrite(path: string, data: string, sync = true): Promise<void> {
  const dir = dirname(path);
  const tmp = await writeTemp(path, data, sync);
  let replaced: string | undefined;
  try {
    replaced = await retainReplaced(dir, path);
    await fs.rename(tmp, path);
  } catch (err) {
    // Not replaced: `replaced` is a second name of the live file, never a spare.
    if (replaced !== undefined) await fs.rm(replaced, { force: true });
    await fs.rm(tmp, { force: true });
    throw err;
  }
  if (replaced !== undefined && !poolSpare(dir, replaced)) await fs.rm(replaced, { force: true });
  if (sync) await fsyncDir(dir);
}

/** Creates `path` with `data` atomically unless it exists. Returns false (file untouched) if it existed. */
export async function createExclusive(path: string, data: string, sync = true): Promise<boolean> {
  const tmp = await writeTemp(path, data, sync);
  try {
    await fs.link(tmp, path);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
  if (sync) await fsyncDir(dirname(path));
  return true;
}


/**
 * Reads a file as text; undefined if it does not exist. Synchronous on purpose: store files are
 * small (a record is about 0.5 KiB) and read from the page cache in microseconds, while an
 * asynchronous read takes four trips through libuv's 4-thread pool (open, stat, read, close),
 * each queued behind the fsyncs of every concurrent write; under load a batch's reads waited
 * seconds there. It holds the event loop about 15 µs per file (60 ms for 4096 records) on a
 * local file system.
 */
export async function readIfExists(path: string): Promise<string | undefined> {
  return readTextIfExists(path);
}

/** readIfExists for callers that are synchronous themselves. */
export function readTextIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Removes a file if present; returns whether it existed. */
export async function removeIfExists(path: string, sync = true): Promise<boolean> {
  try {
    // Kept as the folder's next spare (src/files/spareFiles.ts) while its pool has room.
    if (!(await retireAsSpare(dirname(path), path))) await fs.unlink(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
  if (sync) await fsyncDir(dirname(path));
  return true;
}

/** Directory entries; [] if the directory does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
}

/** Items a bulk operation handles between two turns of the event loop (reads are synchronous). */
const ITEMS_PER_TURN = 16;

/**
 * Maps with at most `limit` promises in flight (thousands of files must not exhaust fds). Keeps
 * order. Yields to the event loop every ITEMS_PER_TURN items, so a bulk read of synchronous reads
 * does not hold the worker's heartbeats and workflow tasks.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      if (i > 0 && i % ITEMS_PER_TURN === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      results[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

