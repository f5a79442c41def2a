/**
 * Lock files for read-modify-write across processes and hosts sharing the store's file system.
 *
 * A lock is a hard link, made exclusively, to a file of the holder process's in the lock's
 * folder (src/files/linkedFiles.ts): the file says the holder's pid, host and token, and its modification
 * time is when the holder last took a lock there. A lock is broken when its holder's pid is gone
 * (same host) or it is older than staleMs (any host). A plain file at the lock's path (one an
 * earlier version of the store created with O_EXCL) is judged the same way.
 *
 * Synchronous (no fsync: a lock needs no durability): a few microseconds, where each call
 * through libuv's thread pool queued behind the store's concurrent fsyncs.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { errnoCode, readIfExists } from './fsUtil';
import { isLinkTo, linkExclusive, type LinkKind } from '../files/linkedFiles';
import { LockTimeoutError } from './types';

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

const HOST = hostname();

const HOLDER: LinkKind = {
  name: 'lock-holder',
  content: () => JSON.stringify({ pid: process.pid, host: HOST, token: randomBytes(6).toString('hex'), acquiredAtMs: Date.now() } satisfies LockContent),
  touch: true,
};

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

function removeLink(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err; // broken as stale meanwhile
  }
}

/** Runs `fn` holding the lock file `path` (exclusive across processes and hosts sharing the file system). */
export async function withFileLock<T>(path: string, options: LockOptions, fn: () => Promise<T>): Promise<T> {
  return withLocalQueue(path, async () => {
    const started = Date.now();
    let delay = 2;
    let holder;
    for (;;) {
      holder = linkExclusive(path, HOLDER);
      if (holder !== undefined) break;
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
      if (isLinkTo(path, holder)) removeLink(path);
    }
  });
}
