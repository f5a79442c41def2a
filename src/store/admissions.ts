/**
 * Admission files: an admission's new records as one file, `admissions/<firstId>.json`, instead
 * of one file per sample. An admission of 512 samples then costs one fsync'd write instead of 512
 * before its shards can start; each sample's own file is written by its first change (the claim
 * of its shard, a drop) and from then on supersedes the admission's record.
 *
 * Format rules the readers rely on:
 * - A file holds the records of consecutive ids from `firstId`, at most ADMISSION_CHUNK of them;
 *   it is created once (create-exclusive) and never changed, so a process may cache what it read.
 * - No two files cover the same id (checked before a file is written).
 * - An admission larger than ADMISSION_CHUNK is written as several files in id order, each begun
 *   once the one before is written, so an interrupted admission leaves a complete prefix: the
 *   recovery follows the chain from the ledger's `nextSampleId` (idsFrom) without listing the
 *   folder.
 * - The file covering an id starts at most ADMISSION_CHUNK - 1 ids below it: a lookup probes that
 *   far back, with synchronous existence checks (microseconds each), once per file and process.
 * - `superseded/<id>`, an empty file (a link to one: src/files/linkedFiles.ts), says the sample
 *   has had a file of its own: once it exists a missing sample file is a lost record (an
 *   error), never a reason to read the admission again. It is created after the sample's file
 *   is written and not fsync'd: it guards against a record file lost later (deleted, corrupted
 *   away), not against a power cut in the seconds after it.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { createExclusive, fileExists, listDir, readTextIfExists } from './fsUtil';
import { linkExclusive, type LinkKind } from '../files/linkedFiles';
import { keepNewest } from './newest';
import { InvalidInputError, MAX_ID, SampleStateError, StoreCorruptionError, StoreError, parseStoreFile, sampleRecordSchema, type SampleRecord } from './types';

/** Records per admission file at most: a format constant (a lookup probes this far back). */
export const ADMISSION_CHUNK = 1024;
/** Admission files a process keeps parsed (a few admissions are read at once: the live samples'). */
const CACHED_FILES = 64;
const ADMISSION_FILE = /^(\d+)\.json$/;
const SUPERSEDED_FLAG: LinkKind = { name: 'flag', content: () => '', touch: false };

const admissionFileSchema = z.object({ firstId: z.number().int().min(0), records: z.array(sampleRecordSchema).min(1).max(ADMISSION_CHUNK) });
type AdmissionFile = z.infer<typeof admissionFileSchema>;

export class AdmissionFiles {
  /** Parsed files by first id, least recently used first. */
  private readonly cache = new Map<number, AdmissionFile>();

  constructor(
    readonly dir: string,
    private readonly sync: boolean,
    /** Where a sample's own file is (which supersedes its admission's record). */
    private readonly samplePath: (id: number) => string,
  ) {}

  path(firstId: number): string {
    return join(this.dir, `${firstId}.json`);
  }

  get supersededDir(): string {
    return join(this.dir, 'superseded');
  }

  /** Whether `id` has had a file of its own (written from its admission's record). */
  superseded(id: number): boolean {
    return fileExists(join(this.supersededDir, String(id)));
  }

  /**
   * Records that `id`, read from its admission, has a file of its own now: a link to an empty
   * file (src/files/linkedFiles.ts: no inode to allocate). Synchronous, as the store's lock
   * files: through the thread pool it would queue behind fsyncs. Already marked: nothing to do.
   */
  markSuperseded(id: number): void {
    linkExclusive(join(this.supersededDir, String(id)), SUPERSEDED_FLAG);
  }

  /**
   * Writes the records (new, running, no turns, consecutive ids) as admission files. A retry
   * finds its files written and leaves them; an id another admission or sample already holds
   * with other immutable fields is refused (SampleStateError) before anything is written.
   * Returns the ids whose admission this call wrote and those written before.
   */
  async write(records: readonly SampleRecord[]): Promise<{ created: number[]; existing: number[] }> {
    const chunks: SampleRecord[][] = [];
    for (let start = 0; start < records.length; start += ADMISSION_CHUNK) chunks.push(records.slice(start, start + ADMISSION_CHUNK));
    const pending = chunks.filter((chunk) => !this.checkChunk(chunk));
    const created: number[] = [];
    for (const chunk of pending) {
      const file: AdmissionFile = { firstId: chunk[0]!.id, records: chunk };
      if (!(await createExclusive(this.path(file.firstId), JSON.stringify(file), this.sync))) {
        // Written since the check by a concurrent call: the same admission, or refused as above.
        this.cache.delete(file.firstId);
        if (!this.checkChunk(chunk)) throw new StoreCorruptionError(`admission ${file.firstId}`, this.path(file.firstId), 'created concurrently but not found');
        continue;
      }
      this.remember(file);
      created.push(...chunk.map((record) => record.id));
    }
    const createdSet = new Set(created);
    return { created, existing: records.map((record) => record.id).filter((id) => !createdSet.has(id)) };
  }

  /** Whether any admission was written (one folder listing: for stores written one file per sample). */
  async any(): Promise<boolean> {
    return (await listDir(this.dir)).some((name) => ADMISSION_FILE.test(name));
  }

  /** The admission's record of `id`, or undefined if no admission file covers it. */
  recordOf(id: number): SampleRecord | undefined {
    const file = this.fileCovering(id);
    return file?.records[id - file.firstId];
  }

  /** Ids admitted from `fromId` on by a chain of admission files starting there (what an interrupted admission wrote). */
  idsFrom(fromId: number): number[] {
    const ids: number[] = [];
    for (let next = fromId; next <= MAX_ID; ) {
      const file = this.read(next);
      if (file === undefined) break;
      ids.push(...file.records.map((record) => record.id));
      next = file.firstId + file.records.length;
    }
    return ids;
  }

  /**
   * Every admitted id from `fromId` on, by listing the folder (the audit and tools; not on a
   * run's path). An unreadable file throws, or is reported in `unreadable` where one is given.
   */
  async listIds(fromId = 0, unreadable?: string[]): Promise<number[]> {
    const ids: number[] = [];
    for (const name of await listDir(this.dir)) {
      const firstId = ADMISSION_FILE.exec(name)?.[1];
      if (firstId === undefined) continue;
      let file: AdmissionFile | undefined;
      try {
        file = this.read(Number(firstId));
      } catch (err) {
        if (unreadable === undefined || !(err instanceof StoreError)) throw err;
        unreadable.push(err.message);
      }
      for (const record of file?.records ?? []) if (record.id >= fromId) ids.push(record.id);
    }
    return ids;
  }

  /**
   * Checks a chunk against what is on disk: true if its admission file is written already (the
   * same samples), false if it is free to write. Throws if any id is held otherwise.
   */
  private checkChunk(chunk: readonly SampleRecord[]): boolean {
    const firstId = chunk[0]!.id;
    const written = this.read(firstId);
    if (written !== undefined) {
      if (written.records.length !== chunk.length) {
        throw new SampleStateError(firstId, this.path(firstId), 'admit', `admitted before with ${written.records.length} samples, now ${chunk.length}`);
      }
      chunk.forEach((record, i) => checkSameSample(written.records[i]!, record, this.path(firstId), 'admit'));
      return true;
    }
    const before = this.fileCovering(firstId);
    if (before !== undefined) throw new SampleStateError(firstId, this.path(before.firstId), 'admit', `id already admitted from ${before.firstId}`);
    for (const record of chunk) {
      if (record.id > firstId && fileExists(this.path(record.id))) throw new SampleStateError(record.id, this.path(record.id), 'admit', 'id already admitted by another admission');
      if (fileExists(this.samplePath(record.id))) throw new SampleStateError(record.id, this.samplePath(record.id), 'admit', 'id already used by a sample of its own');
    }
    return false;
  }

  /** Validates an admission's records: new, running, no turns, consecutive ids. */
  validate(records: readonly SampleRecord[]): void {
    records.forEach((record, i) => {
      if (record.status !== 'running' || record.batch !== undefined || record.turns.length > 0 || record.partial !== undefined || record.owner !== undefined) {
        throw new InvalidInputError(`admitted sample ${record.id}`, this.samplePath(record.id), 'must be running, unbatched, unowned and without turns');
      }
      const previous = records[i - 1];
      if (previous !== undefined && record.id !== previous.id + 1) {
        throw new InvalidInputError(`admitted sample ${record.id}`, this.samplePath(record.id), `ids must be consecutive (after ${previous.id})`);
      }
    });
  }

  private fileCovering(id: number): AdmissionFile | undefined {
    for (const file of this.cache.values()) if (covers(file, id)) return this.remember(file);
    for (let firstId = id; firstId >= 0 && firstId > id - ADMISSION_CHUNK; firstId--) {
      if (this.cache.has(firstId) || fileExists(this.path(firstId))) {
        const file = this.read(firstId);
        // Files never overlap: the nearest one below `id` that does not reach it rules out any further below.
        return file !== undefined && covers(file, id) ? file : undefined;
      }
    }
    return undefined;
  }

  /** The admission file starting at `firstId`, or undefined. */
  private read(firstId: number): AdmissionFile | undefined {
    const cached = this.cache.get(firstId);
    if (cached !== undefined) return this.remember(cached);
    const path = this.path(firstId);
    const text = readTextIfExists(path);
    if (text === undefined) return undefined;
    const file = parseStoreFile(admissionFileSchema, text, `admission ${firstId}`, path);
    const wrongId = file.records.findIndex((record, i) => record.id !== firstId + i);
    if (file.firstId !== firstId || wrongId >= 0) {
      throw new StoreCorruptionError(`admission ${firstId}`, path, `holds ids from ${file.firstId} (record ${Math.max(wrongId, 0)} is sample ${file.records[Math.max(wrongId, 0)]?.id})`);
    }
    return this.remember(file);
  }

  private remember(file: AdmissionFile): AdmissionFile {
    keepNewest(this.cache, file.firstId, file, CACHED_FILES);
    return file;
  }
}

function covers(file: AdmissionFile, id: number): boolean {
  return id >= file.firstId && id < file.firstId + file.records.length;
}

/**
 * A sample created or admitted again (a retry) must be the same sample: the record held is left as
 * it is, an id reused for a different sample is refused.
 */
export function checkSameSample(held: SampleRecord, record: SampleRecord, path: string, operation: string): void {
  if (held.promptTokens !== record.promptTokens || held.startVersion !== record.startVersion) {
    throw new SampleStateError(
      record.id,
      path,
      operation,
      `id already used by a different sample (promptTokens ${held.promptTokens}, startVersion ${held.startVersion}; ` +
        `new: promptTokens ${record.promptTokens}, startVersion ${record.startVersion})`,
    );
  }
}
