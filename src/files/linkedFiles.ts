/**
 * Files made as hard links to a file of this process's, for the store's lock files and its
 * "superseded" flags: exclusive like a create with O_EXCL, without an inode of their own.
 *
 * Why: creating a file allocates an inode, and ext4 without a journal then skips every inode
 * freed in the last 30 s, reading each one's inode-table block (`recently_deleted`). With the
 * store's churn (a lock per checkpoint, a record replaced per turn) a create cost about 0.4 ms
 * of CPU, on the event loop, where a link costs microseconds: a link allocates no inode, and its
 * removal frees none (docs/benchmarks.md, "Inodes kept"). link() is also the classic
 * exclusive create on NFS.
 *
 * A source file lives in the folder of the files linked to it (a link cannot cross file systems),
 * is named `.<kind>.<pid>.<random><n>` (hidden: no listing of the store matches it) and is
 * removed when the process exits; a killed process leaves it behind (a few bytes). The links
 * stay valid either way.
 */
import { closeSync, linkSync, lstatSync, openSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errnoCode, fileExists, uniqueSuffix } from './basics';

export interface LinkSource {
  readonly path: string;
  readonly ino: number;
  readonly dev: number;
}

export interface LinkKind {
  /** Part of the source's name: `lock-holder`, `flag`. */
  name: string;
  /** The source's content (what a reader of any link to it reads). */
  content(): string;
  /**
   * Set the source's modification time to now before each link. Every link shares it: a lock's
   * age, by which other processes judge it stale, is then the time its holder last took a lock
   * in the folder (never older than this lock). Before the link, so no lock is seen older.
   */
  touch: boolean;
}

const sources = new Map<string, LinkSource>();
let cleanupRegistered = false;

function removeSources(): void {
  for (const source of sources.values()) rmSync(source.path, { force: true });
}

function newSource(dir: string, kind: LinkKind): LinkSource {
  const path = join(dir, `.${kind.name}.${uniqueSuffix()}`);
  const fd = openSync(path, 'wx', 0o644);
  try {
    writeFileSync(fd, kind.content(), 'utf8');
  } finally {
    closeSync(fd);
  }
  const stat = statSync(path);
  if (!cleanupRegistered) {
    process.once('exit', removeSources);
    cleanupRegistered = true;
  }
  return { path, ino: stat.ino, dev: stat.dev };
}

function sourceFor(dir: string, kind: LinkKind): LinkSource {
  const key = `${dir}\0${kind.name}`;
  let source = sources.get(key);
  if (source === undefined) {
    source = newSource(dir, kind);
    sources.set(key, source);
  }
  return source;
}

function dropSource(dir: string, kind: LinkKind, source: LinkSource): void {
  const key = `${dir}\0${kind.name}`;
  if (sources.get(key) === source) sources.delete(key);
}

/**
 * Creates `path` as a link to this process's source of `kind` in its folder. Returns the source
 * linked, or undefined if `path` exists already. A source removed from under the process (its
 * folder cleaned) or at its file system's link limit (EMLINK) is replaced by a new one.
 */
export function linkExclusive(path: string, kind: LinkKind): LinkSource | undefined {
  const dir = dirname(path);
  for (let attempt = 0; ; attempt++) {
    const source = sourceFor(dir, kind);
    try {
      if (kind.touch) {
        const now = new Date();
        utimesSync(source.path, now, now);
      }
      linkSync(source.path, path);
      return source;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EEXIST') return undefined;
      const replaceable = code === 'EMLINK' || (code === 'ENOENT' && !fileExists(source.path));
      if (!replaceable || attempt > 0) throw err;
      dropSource(dir, kind, source);
    }
  }
}

/** Whether `path` is a link to `source` (false if it is absent or another file). */
export function isLinkTo(path: string, source: LinkSource): boolean {
  try {
    const stat = lstatSync(path);
    return stat.ino === source.ino && stat.dev === source.dev;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

