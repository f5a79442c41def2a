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
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { errnoCode } from './errno';
import { dropSpare, keepSpare, retainReplaced, retireAsSpare, takeSpare } from './spareFiles';

export { errnoCode };

/** Temp files start with '.' and end with '.tmp', so listings that match `^\d+` skip them. */
export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith('.tmp');
}

/**
 * Unique per process (a random prefix, for hosts sharing the file system) and per call (a
 * counter): a write drew 6 random bytes before, a measurable share of a turn's checkpoint.
 */
const processUnique = randomBytes(6).toString('hex');
let uniqueSerial = 0;
function uniqueSuffix(): string {
  uniqueSerial += 1;
  return `${process.pid}.${processUnique}${uniqueSerial.toString(36)}`;
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

/** Writes `data` into a spare of the folder (spareFiles.ts), or a new temp file; returns its path. */
async function writeTemp(path: string, data: string, sync: boolean): Promise<string> {
  const dir = dirname(path);
  const spare = await takeSpare(dir);
  const tmp = spare?.path ?? tempPathFor(path);
  let handle: fs.FileHandle;
  try {
    handle = spare?.handle ?? (await fs.open(tmp, 'wx', 0o644));
  } catch (err) {
    // ENOENT on a fresh temp name means its folder is gone: say which, not the temp file's name.
    if (errnoCode(err) === 'ENOENT') throw new MissingDirectoryError(dir, path);
    throw err;
  }
  try {
    // A freshly opened handle writes from offset 0; a spare's older, longer content is cut.
    await handle.writeFile(data, 'utf8');
    if (spare !== undefined) {
      const bytes = Buffer.byteLength(data, 'utf8');
      if (spare.size > bytes) await handle.truncate(bytes);
    }
    if (sync) await handle.sync();
  } catch (err) {
    await handle.close();
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
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
    if (replaced !== undefined) await dropSpare(replaced);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  if (replaced !== undefined) await keepSpare(dir, replaced);
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

/** Whether a file exists (synchronous, as readIfExists); an error other than its absence is thrown. */
export function fileExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
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
    // Kept as the folder's next spare (spareFiles.ts) while its pool has room.
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

