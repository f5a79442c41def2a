/**
 * Crash-safe file primitives for the trajectory store.
 *
 * - atomicWrite: temp file in the same directory + fsync + rename (+ directory fsync). A reader
 *   sees the old contents or the new ones, never a torn file; a SIGKILL mid-write leaves at most
 *   a stray temp file (hidden name, ignored by every listing).
 * - createExclusive: same, but link() instead of rename(), so an existing file is never replaced
 *   (atomic "create if absent", also across processes and hosts sharing the file system).
 * - FileLock: a lock file created with O_EXCL, for read-modify-write across processes. A lock
 *   left by a killed process is broken when its pid is gone (same host) or it is older than
 *   staleMs (any host).
 *
 * Reads and lock files are synchronous calls of a few microseconds each on a local file system;
 * as asynchronous calls each took trips through libuv's thread pool (4 threads) and queued behind
 * every concurrent fsync: under load, the reads of a batch the workflow waited for took seconds.
 * Writes stay asynchronous: their fsyncs take milliseconds, and the pool runs them beside the
 * event loop.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, promises as fs, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { LockTimeoutError } from './types';

export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

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

async function writeTemp(path: string, data: string, sync: boolean): Promise<string> {
  const tmp = tempPathFor(path);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(tmp, 'wx', 0o644);
  } catch (err) {
    // ENOENT on a fresh temp name means its folder is gone: say which, not the temp file's name.
    if (errnoCode(err) === 'ENOENT') throw new MissingDirectoryError(dirname(path), path);
    throw err;
  }
  try {
    await handle.writeFile(data, 'utf8');
    if (sync) await handle.sync();
  } catch (err) {
    await handle.close();
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  return tmp;
}

/** Replaces `path` atomically with `data`. */
export async function atomicWrite(path: string, data: string, sync = true): Promise<void> {
  const tmp = await writeTemp(path, data, sync);
  try {
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  if (sync) await fsyncDir(dirname(path));
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
    await fs.unlink(path);
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

// ---------------------------------------------------------------------------------------------
// Locks

export interface LockOptions {
  /** A lock older than this is considered abandoned and broken. */
  staleMs: number;
  /** Give up (LockTimeoutError) after waiting this long. */
  timeoutMs: number;
}

interface LockContent {
  pid: number;
  host: string;
  token: string;
  acquiredAtMs: number;
}

function parseLockContent(text: string): LockContent | undefined {
  try {
    const v: unknown = JSON.parse(text);
    if (
      typeof v === 'object' && v !== null &&
      typeof (v as LockContent).pid === 'number' &&
      typeof (v as LockContent).host === 'string' &&
      typeof (v as LockContent).token === 'string'
    ) {
      return v as LockContent;
    }
  } catch {
    // torn or foreign lock file: judged by age only
  }
  return undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const HOST = hostname();

/** In-process queue per lock path, so waiters in one process do not poll the file lock. */
const localQueues = new Map<string, Promise<void>>();

async function withLocalQueue<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = localQueues.get(key) ?? Promise.resolve();
  let release!: () => void;
  const current = new Promise<void>((resolve) => (release = resolve));
  const tail = previous.then(() => current);
  localQueues.set(key, tail);
  await previous;
  try {
    return await fn();
  } finally {
    release();
    if (localQueues.get(key) === tail) localQueues.delete(key);
  }
}

/** Whether the lock at `path` is abandoned: holder process gone (same host) or older than staleMs. */
async function isAbandoned(path: string, staleMs: number): Promise<boolean> {
  let stat;
  try {
    stat = await fs.stat(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false; // released meanwhile: just retry
    throw err;
  }
  if (Date.now() - stat.mtimeMs > staleMs) return true;
  const text = await readIfExists(path);
  if (text === undefined) return false;
  const content = parseLockContent(text);
  if (content === undefined) return false; // being written, or foreign: wait for staleMs
  return content.host === HOST && content.pid !== process.pid && !pidAlive(content.pid);
}

async function breakLock(path: string): Promise<void> {
  // Rename first so that of several breakers only one removes this lock file.
  const tomb = `${path}.broken-${randomBytes(6).toString('hex')}`;
  try {
    await fs.rename(path, tomb);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  await fs.rm(tomb, { force: true });
}

/** Runs `fn` holding the lock file `path` (exclusive across processes and hosts sharing the file system). */
export async function withFileLock<T>(path: string, options: LockOptions, fn: () => Promise<T>): Promise<T> {
  return withLocalQueue(path, async () => {
    const token = uniqueSuffix();
    const content: LockContent = { pid: process.pid, host: HOST, token, acquiredAtMs: Date.now() };
    const started = Date.now();
    let delay = 2;
    for (;;) {
      try {
        // Synchronous (no fsync: a lock needs no durability): a few microseconds, where three
        // trips through libuv's thread pool queued behind concurrent fsyncs (see readIfExists).
        const fd = openSync(path, 'wx', 0o644);
        try {
          writeFileSync(fd, JSON.stringify(content), 'utf8');
        } finally {
          closeSync(fd);
        }
        break;
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      if (await isAbandoned(path, options.staleMs)) {
        await breakLock(path);
        continue;
      }
      const waited = Date.now() - started;
      if (waited > options.timeoutMs) throw new LockTimeoutError(path, waited);
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 50);
    }
    try {
      return await fn();
    } finally {
      // Release only our own lock: if it was broken as stale, someone else may hold it now.
      const text = await readIfExists(path);
      if (text !== undefined && parseLockContent(text)?.token === token) {
        rmSync(path, { force: true });
      }
    }
  });
}
