/**
 * FsTrajectoryStore: the trajectory store on a local or shared file system.
 *
 * Layout under `<rootDir>/<runId>/`:
 *
 *   admissions/<firstId>.json  the records of an admission's new samples, consecutive ids (admissions.ts)
 *   admissions/superseded/<id> the sample has had a file of its own (a missing one is then lost)
 *   samples/<id>.json          SampleRecord, written by the sample's first change (its claim, a
 *                              drop); from then on the only copy of its body
 *   completed/<id>             CompletedMarker {id, completedAtMs}: completed and not yet batched
 *   batches/<iteration>.json   BatchManifest: the authoritative content of an iteration's batch
 *   locks/sample-<id>.lock     per-sample lock for read-modify-write (claim, checkpoint, ...)
 *   locks/batches.lock         held by sealBatch and dropSamples
 *
 * Every write is atomic (temp file in the same directory + fsync + rename, then a directory
 * fsync); temp files are named `.<name>.<pid>.<hex>.tmp` and ignored by every listing, so a
 * process killed mid-write leaves at most a stray temp file. Every operation is idempotent.
 *
 * Ordering that keeps a crash at any point recoverable by retrying the same call:
 *   markCompleted   marker first, then the record (a marker for a still-running record is ignored);
 *   sealBatch       manifest first, then `batch` on each record, then the marker is removed;
 *   dropSamples     record first, then the marker is removed.
 * Batch manifests are the source of truth for batch membership: a sample listed in a manifest
 * counts as batched even before its record says so (crash window), so it can be neither listed
 * as completed, dropped, nor sealed into another batch.
 */
import { promises as fs, watch } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { checkIntRange, checkNonEmpty, checkNoDuplicates } from '../validation/patterns';
import { AdmissionFiles, checkSameSample } from './admissions';
import { BatchIndex } from './batchIndex';
import {
  atomicWrite,
  createExclusive,
  errnoCode,
  fileExists,
  isTempName,
  listDir,
  mapLimit,
  readIfExists,
  removeIfExists,
} from './fsUtil';
import { withFileLock, type LockOptions } from './fileLock';
import { keepNewest } from './newest';
import type { TrajectoryStore } from './index';
import {
  BatchConflictError,
  BatchNotFoundError,
  FencingError,
  InvalidInputError,
  MAX_ID,
  SampleNotFoundError,
  SampleStateError,
  StoreCorruptionError,
  StoreError,
  batchContextFigures,
  batchManifestSchema,
  batchTokenLags,
  parseStoreFile,
  completedMarkerSchema,
  sampleRecordSchema,
  type AuditExpectations,
  type AuditReport,
  type BatchManifest,
  type CreateSamplesResult,
  type SampleRecord,
} from './types';

export interface FsTrajectoryStoreOptions {
  /** fsync files and directories on every write (default true). Only tests should turn it off. */
  fsync?: boolean;
  /** A lock file older than this is treated as abandoned (default 30 s). Operations hold locks for milliseconds. */
  lockStaleMs?: number;
  /** Waiting longer than this for a lock raises LockTimeoutError (default 60 s). */
  lockTimeoutMs?: number;
  /** Files read or written in parallel by bulk operations (default 32). */
  ioConcurrency?: number;
}

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
/**
 * createSamples writes a call's records in waves of this many, each begun once the one before
 * has ended, so an interrupted call leaves its records as a complete prefix and at most one
 * partial wave after it. findSampleIdsFrom relies on it: a format constant, not a tuning knob
 * (a recovering process must probe as far as any writer's wave reached).
 */
export const CREATE_WAVE = 32;
const SAMPLE_FILE = /^(\d+)\.json$/;
const MARKER_FILE = /^(\d+)$/;
const BATCH_FILE = /^(\d+)\.json$/;

const shardIdSchema = z.string().min(1).max(200);
const rewardSchema = z.number();
const reasonSchema = z.string().trim().min(1).max(1000);

function checkIds(subject: string, ids: readonly number[]): void {
  for (const id of ids) checkIntRange(`${subject} id`, id, 0, MAX_ID);
  checkNoDuplicates(subject, ids);
}

function sameTurn(a: SampleRecord['turns'][number], b: SampleRecord['turns'][number]): boolean {
  return (
    a.turn === b.turn &&
    a.generatedTokens === b.generatedTokens &&
    a.observationTokens === b.observationTokens &&
    a.weightVersion === b.weightVersion &&
    a.rank === b.rank
  );
}

function sortedIds(ids: readonly number[]): number[] {
  return [...ids].sort((a, b) => a - b);
}

/** Manifests kept whole in memory, the most recently read (a seal, the next iteration's recovery and training read the last few). */
const RECENT_MANIFESTS = 8;

export class FsTrajectoryStore implements TrajectoryStore {
  readonly runDir: string;
  private readonly samplesDir: string;
  private readonly completedDir: string;
  private readonly batchesDir: string;
  private readonly locksDir: string;
  private readonly admissions: AdmissionFiles;
  private readonly sync: boolean;
  private readonly lockOptions: LockOptions;
  private readonly concurrency: number;
  private dirsReady: Promise<void> | undefined;
  /**
   * Manifests are immutable once written: the ids of every one read stay indexed for good
   * (`manifestOf`, `indexed`); the manifests themselves only the last RECENT_MANIFESTS read.
   */
  private readonly recentManifests = new Map<number, BatchManifest>();
  private readonly indexed = new Set<number>();
  /** sample id -> iteration of the (first) indexed manifest listing it. */
  private readonly manifestOf = new BatchIndex();

  constructor(
    readonly rootDir: string,
    readonly runId: string,
    options: FsTrajectoryStoreOptions = {},
  ) {
    if (!RUN_ID.test(runId)) {
      throw new InvalidInputError('run id', rootDir, `${JSON.stringify(runId)} must match ${RUN_ID.source}`);
    }
    this.runDir = join(rootDir, runId);
    this.samplesDir = join(this.runDir, 'samples');
    this.completedDir = join(this.runDir, 'completed');
    this.batchesDir = join(this.runDir, 'batches');
    this.locksDir = join(this.runDir, 'locks');
    this.sync = options.fsync ?? true;
    this.lockOptions = { staleMs: options.lockStaleMs ?? 30_000, timeoutMs: options.lockTimeoutMs ?? 60_000 };
    this.concurrency = checkIntRange('ioConcurrency', options.ioConcurrency ?? 32, 1, 1024);
    this.admissions = this.admissionFiles();
  }

  private admissionFiles(): AdmissionFiles {
    return new AdmissionFiles(join(this.runDir, 'admissions'), this.sync, (id) => this.samplePath(id));
  }

  samplePath(id: number): string {
    return join(this.samplesDir, `${id}.json`);
  }

  markerPath(id: number): string {
    return join(this.completedDir, String(id));
  }

  batchPath(iteration: number): string {
    return join(this.batchesDir, `${iteration}.json`);
  }

  // -------------------------------------------------------------------------------------------
  // Samples

  async createSamples(records: readonly SampleRecord[]): Promise<CreateSamplesResult> {
    const valid = records.map((record) => this.validateInput(record, 'new sample'));
    checkIds('createSamples', valid.map((r) => r.id));
    for (const r of valid) {
      if (r.status !== 'running' || r.batch !== undefined) {
        throw new InvalidInputError(`new sample ${r.id}`, this.samplePath(r.id), `must be running and unbatched (status ${r.status})`);
      }
    }
    await this.ensureDirs();
    const created: number[] = [];
    const existing: number[] = [];
    const sorted = [...valid].sort((a, b) => a.id - b.id);
    // Ids an admission holds are the same sample or refused; looked up only where there are admissions.
    const admitted = (await this.admissions.any()) ? (id: number) => this.admissions.recordOf(id) : () => undefined;
    for (let start = 0; start < sorted.length; start += CREATE_WAVE) {
      await mapLimit(sorted.slice(start, start + CREATE_WAVE), this.concurrency, (record) => this.createOne(record, admitted(record.id), created, existing));
    }
    return { created: sortedIds(created), existing: sortedIds(existing) };
  }

  private async createOne(record: SampleRecord, admitted: SampleRecord | undefined, created: number[], existing: number[]): Promise<void> {
    const path = this.samplePath(record.id);
    if (admitted === undefined && (await createExclusive(path, JSON.stringify(record), this.sync))) {
      created.push(record.id);
      return;
    }
    // A retry: leave the record untouched, but refuse an id reused for a different sample.
    checkSameSample(await this.loadSample(record.id), record, path, 'create');
    existing.push(record.id);
  }

  async admitSamples(records: readonly SampleRecord[]): Promise<CreateSamplesResult> {
    checkNonEmpty('admitted samples', records);
    const valid = records.map((record) => this.validateInput(record, 'admitted sample'));
    checkIds('admitSamples', valid.map((r) => r.id));
    this.admissions.validate(valid);
    await this.ensureDirs();
    const { created, existing } = await this.admissions.write(valid);
    return { created: sortedIds(created), existing: sortedIds(existing) };
  }

  async readSample(id: number): Promise<SampleRecord> {
    checkIntRange('sample id', id, 0, MAX_ID);
    return this.loadSample(id);
  }

  async readSamples(ids: readonly number[]): Promise<SampleRecord[]> {
    for (const id of ids) checkIntRange('sample id', id, 0, MAX_ID);
    return mapLimit(ids, this.concurrency, (id) => this.loadSample(id));
  }

  async claim(ids: readonly number[], shardId: string, options: { from?: string } = {}): Promise<void> {
    checkIds('claim', ids);
    const shard = this.checkShardId(shardId);
    const from = options.from === undefined ? undefined : this.checkShardId(options.from);
    const check = (record: SampleRecord): void => {
      if (record.status !== 'running') {
        const batch = record.batch === undefined ? '' : `, in batch ${record.batch}`;
        throw new SampleStateError(record.id, this.samplePath(record.id), `claim (for ${shard})`, `status is ${record.status}${batch}`);
      }
      if (from !== undefined && record.owner !== from && record.owner !== shard) throw new FencingError(record.id, this.samplePath(record.id), shard, record.owner);
    };
    // Check everything before changing anything, so a bad id leaves no half-done claim.
    (await this.readSamples(ids)).forEach(check);
    await mapLimit(ids, this.concurrency, (id) =>
      this.withSampleLock(id, async () => {
        const { record, fromAdmission } = await this.loadSampleFrom(id);
        check(record);
        // A completion marker beside a running record was left by a crash between the two writes
        // of a completion (the turn runs again): without it awaitBatch stops recounting this one.
        // Looked for with a synchronous read first: an unlink through the thread pool on every
        // claim would queue behind the writes' fsyncs.
        if ((await readIfExists(this.markerPath(id))) !== undefined) await removeIfExists(this.markerPath(id), this.sync);
        if (record.owner !== shard) await this.writeSample({ ...record, owner: shard });
        if (fromAdmission) this.admissions.markSuperseded(id);
      }),
    );
  }

  async checkpoint(record: SampleRecord, shardId: string): Promise<SampleRecord> {
    const shard = this.checkShardId(shardId);
    const next = this.validateInput(record, 'checkpoint of sample');
    this.checkRunningUnbatched(next, 'checkpoint of sample', 'a checkpoint');
    return this.withSampleLock(next.id, async () => {
      const current = await this.loadSample(next.id);
      if (current.owner !== shard) throw new FencingError(next.id, this.samplePath(next.id), shard, current.owner);
      if (current.status !== 'running') {
        throw new SampleStateError(next.id, this.samplePath(next.id), `checkpoint (by ${shard})`, `status is ${current.status}`);
      }
      this.checkContinues(current, next, shard, 'checkpoint');
      const written: SampleRecord = { ...next, owner: shard };
      await this.writeValidSample(written);
      return written;
    });
  }

  async markCompleted(id: number, shardId: string, reward: number, nowMs: number): Promise<SampleRecord> {
    checkIntRange('sample id', id, 0, MAX_ID);
    const shard = this.checkShardId(shardId);
    return this.complete(id, shard, reward, nowMs, (current) => current);
  }

  async completeSample(record: SampleRecord, shardId: string, reward: number, nowMs: number): Promise<SampleRecord> {
    const shard = this.checkShardId(shardId);
    const last = this.validateInput(record, 'completion of sample');
    this.checkRunningUnbatched(last, 'completion of sample', 'a completion');
    const final = last.turns.at(-1)?.final;
    if (final !== undefined && final.reward !== reward) {
      throw new InvalidInputError(`completion of sample ${last.id}`, this.samplePath(last.id), `reward ${reward} differs from its final turn's ${final.reward}`);
    }
    return this.complete(last.id, shard, reward, nowMs, (current) => {
      this.checkContinues(current, last, shard, 'completion');
      return last;
    });
  }

  /**
   * Completes an owned sample: the completion marker first (awaitBatch counts markers), then the
   * record, `withTurns(current)`'s turns with the partial turn cleared. A crash between the two
   * leaves a marker beside the running record: awaitBatch recounts it from the records until the
   * next claim removes it. A completed sample is left as it is (a retry), its lost marker
   * re-created while it is not in a batch.
   */
  private async complete(id: number, shard: string, reward: number, nowMs: number, withTurns: (current: SampleRecord) => SampleRecord): Promise<SampleRecord> {
    checkIntRange('nowMs', nowMs, 0, MAX_ID);
    const path = this.samplePath(id);
    if (!rewardSchema.safeParse(reward).success) {
      throw new InvalidInputError(`reward of sample ${id}`, path, `must be a finite number, got ${String(reward)}`);
    }
    await this.ensureDirs();
    return this.withSampleLock(id, async () => {
      const current = await this.loadSample(id);
      if (current.owner !== shard) throw new FencingError(id, path, shard, current.owner);
      if (current.status === 'dropped') {
        throw new SampleStateError(id, path, `complete (by ${shard})`, `sample was dropped: ${current.dropReason ?? ''}`);
      }
      if (current.status === 'completed') {
        const completedAtMs = current.completedAtMs ?? nowMs;
        if (current.batch === undefined && !(await this.isInAnyManifest(id))) {
          await createExclusive(this.markerPath(id), JSON.stringify({ id, completedAtMs }), this.sync);
        }
        return current;
      }
      const { partial: _partial, ...rest } = withTurns(current);
      const completed: SampleRecord = { ...rest, owner: shard, status: 'completed', reward, completedAtMs: nowMs };
      await atomicWrite(this.markerPath(id), JSON.stringify({ id, completedAtMs: nowMs }), this.sync);
      await this.writeSample(completed);
      return completed;
    });
  }

  /** A checkpoint or completion record handed in must be a running, unbatched record. */
  private checkRunningUnbatched(record: SampleRecord, what: string, kind: string): void {
    if (record.status !== 'running' || record.batch !== undefined) {
      throw new InvalidInputError(
        `${what} ${record.id}`,
        this.samplePath(record.id),
        `${kind} must be a running, unbatched record (got status ${record.status}); use markCompleted or dropSamples`,
      );
    }
  }

  /**
   * The record `next` continues the one on disk (whose owner the caller has checked): same
   * immutable fields, every turn on disk kept as it is.
   */
  private checkContinues(current: SampleRecord, next: SampleRecord, shard: string, what: string): void {
    const path = this.samplePath(next.id);
    const immutable = ['startVersion', 'promptTokens', 'startedAtMs'] as const;
    for (const field of immutable) {
      if (current[field] !== next[field]) {
        throw new SampleStateError(next.id, path, `${what} (by ${shard})`, `${field} changed from ${current[field]} to ${next[field]}`);
      }
    }
    if (next.turns.length < current.turns.length) {
      throw new SampleStateError(next.id, path, `${what} (by ${shard})`, `would lose turns: ${current.turns.length} on disk, ${next.turns.length} in the ${what}`);
    }
    const diverged = current.turns.findIndex((turn, i) => {
      const other = next.turns[i];
      return other === undefined || !sameTurn(turn, other);
    });
    if (diverged >= 0) {
      throw new SampleStateError(next.id, path, `${what} (by ${shard})`, `turn ${diverged} differs from the one on disk`);
    }
  }

  async listCompleted(candidateIds?: readonly number[]): Promise<number[]> {
    if (candidateIds !== undefined) checkIds('listCompleted candidates', candidateIds);
    const marked = new Set<number>();
    for (const name of await listDir(this.completedDir)) {
      const m = MARKER_FILE.exec(name);
      if (m?.[1] !== undefined) marked.add(Number(m[1]));
    }
    const candidates = candidateIds === undefined ? [...marked] : candidateIds.filter((id) => marked.has(id));
    if (candidates.length === 0) return [];
    await this.refreshManifests();
    const unbatched = candidates.filter((id) => !this.manifestOf.has(id));
    const records = await this.readSamples(unbatched);
    return records
      .filter((r) => r.status === 'completed' && r.batch === undefined)
      .sort((a, b) => (a.completedAtMs ?? 0) - (b.completedAtMs ?? 0) || a.id - b.id)
      .map((r) => r.id);
  }

  async countCompletionMarkers(candidateIds: readonly number[]): Promise<number> {
    checkIds('countCompletionMarkers candidates', candidateIds);
    const wanted = new Set(candidateIds);
    let count = 0;
    for (const name of await listDir(this.completedDir)) {
      const m = MARKER_FILE.exec(name);
      if (m?.[1] !== undefined && wanted.has(Number(m[1]))) count += 1;
    }
    return count;
  }

  async watchCompletions(onChange: (sampleId: number | undefined) => void): Promise<() => void> {
    await this.ensureDirs();
    try {
      // inotify on Linux: markers are renamed into the folder. Network file systems may report
      // nothing; the caller's poll still finds the markers.
      const watcher = watch(this.completedDir, { persistent: false }, (_event, name) => {
        if (name === null) return onChange(undefined);
        const marker = MARKER_FILE.exec(name);
        // Temp files of a marker being written are not news; its rename into place is.
        if (marker?.[1] !== undefined) onChange(Number(marker[1]));
        else if (!isTempName(name)) onChange(undefined);
      });
      // A watch that fails only loses the hint: the caller's poll still finds the markers.
      watcher.on('error', () => watcher.close());
      return () => watcher.close();
    } catch (err) {
      // No inotify here, or its watch limit reached: poll only.
      if (errnoCode(err) === 'ENOSYS' || errnoCode(err) === 'EPERM' || errnoCode(err) === 'ENOSPC') return () => undefined;
      throw err;
    }
  }

  async dropSamples(ids: readonly number[], reason: string): Promise<void> {
    checkIds('dropSamples', ids);
    const why = reasonSchema.safeParse(reason);
    if (!why.success) {
      throw new InvalidInputError('drop reason', this.samplesDir, `must be a non-empty string, got ${JSON.stringify(reason)}`);
    }
    if (ids.length === 0) return;
    await this.ensureDirs();
    await this.withBatchesLock(async () => {
      await this.refreshManifests();
      const check = (record: SampleRecord): void => {
        const batch = record.batch ?? this.manifestOf.get(record.id);
        if (batch !== undefined) {
          throw new SampleStateError(record.id, this.samplePath(record.id), 'drop', `sample is in batch ${batch}`);
        }
      };
      (await this.readSamples(ids)).forEach(check);
      await mapLimit(ids, this.concurrency, (id) =>
        this.withSampleLock(id, async () => {
          const { record, fromAdmission } = await this.loadSampleFrom(id);
          check(record);
          if (record.status !== 'dropped') {
            await this.writeSample({ ...record, status: 'dropped', dropReason: why.data });
          }
          if (fromAdmission) this.admissions.markSuperseded(id);
          await removeIfExists(this.markerPath(id), this.sync);
        }),
      );
    });
  }

  // -------------------------------------------------------------------------------------------
  // Batches

  async sealBatch(iteration: number, fromVersion: number, ids: readonly number[], nowMs: number): Promise<BatchManifest> {
    return this.sealOrWriteManifest(iteration, fromVersion, ids, nowMs, true);
  }

  async writeBatchManifest(iteration: number, fromVersion: number, ids: readonly number[], nowMs: number): Promise<BatchManifest> {
    return this.sealOrWriteManifest(iteration, fromVersion, ids, nowMs, false);
  }

  private async sealOrWriteManifest(iteration: number, fromVersion: number, ids: readonly number[], nowMs: number, markSamples: boolean): Promise<BatchManifest> {
    checkIntRange('iteration', iteration, 0, MAX_ID);
    checkIntRange('fromVersion', fromVersion, 0, MAX_ID);
    checkIntRange('nowMs', nowMs, 0, MAX_ID);
    checkNonEmpty(`batch ${iteration} sample ids`, ids);
    checkIds(`batch ${iteration}`, ids);
    await this.ensureDirs();
    const path = this.batchPath(iteration);
    return this.withBatchesLock(async () => {
      await this.refreshManifests();
      let manifest = this.indexed.has(iteration) ? await this.readBatch(iteration) : undefined;
      if (manifest !== undefined) this.checkSameBatch(manifest, fromVersion, ids);
      for (const id of ids) {
        const other = this.manifestOf.get(id);
        if (other !== undefined && other !== iteration) {
          throw new BatchConflictError(iteration, path, `sample ${id} is already in batch ${other} (${this.batchPath(other)})`, id, other);
        }
      }
      const check = (record: SampleRecord): void => {
        if (record.batch !== undefined && record.batch !== iteration) {
          throw new BatchConflictError(
            iteration,
            path,
            `sample ${record.id} is already in batch ${record.batch} (per ${this.samplePath(record.id)})`,
            record.id,
            record.batch,
          );
        }
        if (record.status !== 'completed') {
          throw new SampleStateError(record.id, this.samplePath(record.id), `seal into batch ${iteration}`, `status is ${record.status}`);
        }
      };
      const records = await this.readSamples(ids);
      records.forEach(check);

      if (manifest === undefined) {
        const fresh: BatchManifest = {
          iteration,
          fromVersion,
          sampleIds: [...ids],
          ...batchContextFigures(records),
          createdAtMs: nowMs,
          tokenLags: batchTokenLags(records, fromVersion),
        };
        if (!(await createExclusive(path, JSON.stringify(fresh), this.sync))) {
          // Written by a store that does not share our lock directory: accept it only if identical.
          const onDisk = await this.loadManifest(iteration);
          this.checkSameBatch(onDisk, fromVersion, ids);
          manifest = onDisk;
        } else {
          manifest = fresh;
        }
        this.cacheManifest(manifest);
      }
      if (!markSamples) return manifest;

      await mapLimit(ids, this.concurrency, (id) =>
        this.withSampleLock(id, async () => {
          const record = await this.loadSample(id);
          check(record);
          if (record.batch !== iteration) await this.writeSample({ ...record, batch: iteration });
          await removeIfExists(this.markerPath(id), this.sync);
        }),
      );
      return manifest;
    });
  }

  async readBatch(iteration: number): Promise<BatchManifest> {
    checkIntRange('iteration', iteration, 0, MAX_ID);
    const recent = this.recentManifests.get(iteration);
    if (recent !== undefined) return recent;
    const manifest = await this.loadManifest(iteration);
    this.cacheManifest(manifest);
    return manifest;
  }

  async findSampleIdsFrom(fromId: number): Promise<number[]> {
    checkIntRange('fromId', fromId, 0, MAX_ID);
    // The chain of admission files from fromId, then what createSamples wrote after it.
    const found = this.admissions.idsFrom(fromId);
    let firstMissing: number | undefined;
    // Every id below the first missing one, then one wave past it (CREATE_WAVE).
    for (let id = (found.at(-1) ?? fromId - 1) + 1; firstMissing === undefined || id < firstMissing + CREATE_WAVE; id++) {
      if (id > MAX_ID) break;
      if (fileExists(this.samplePath(id))) found.push(id);
      else firstMissing ??= id;
    }
    return found;
  }

  async listSampleIds(fromId = 0): Promise<number[]> {
    return this.listIdsWith(this.admissions, fromId);
  }

  private async listIdsWith(admissions: AdmissionFiles, fromId = 0, unreadable?: string[]): Promise<number[]> {
    const ids = new Set(await admissions.listIds(fromId, unreadable));
    for (const name of await listDir(this.samplesDir)) {
      const m = SAMPLE_FILE.exec(name);
      if (m?.[1] !== undefined && Number(m[1]) >= fromId) ids.add(Number(m[1]));
    }
    return sortedIds([...ids]);
  }

  async listBatches(): Promise<number[]> {
    const iterations: number[] = [];
    for (const name of await listDir(this.batchesDir)) {
      const m = BATCH_FILE.exec(name);
      if (m?.[1] !== undefined) iterations.push(Number(m[1]));
    }
    return iterations.sort((a, b) => a - b);
  }

  // -------------------------------------------------------------------------------------------
  // Audit: the proof of exactly-once accounting. Reads everything fresh from disk (no cache).

  async audit(expected: AuditExpectations = {}): Promise<AuditReport> {
    const violations: string[] = [];
    const admissions = this.admissionFiles();
    const unreadable: string[] = [];
    const sampleIds = await this.listIdsWith(admissions, 0, unreadable);
    violations.push(...unreadable.map((problem) => `admission unreadable: ${problem}`));
    const onDisk = new Set(sampleIds);
    const records = new Map<number, SampleRecord>();
    await mapLimit(sampleIds, this.concurrency, async (id) => {
      try {
        records.set(id, await this.loadSample(id, admissions));
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        violations.push(`sample ${id}: unreadable: ${err.message}`);
      }
    });

    const markers = new Set<number>();
    for (const name of await listDir(this.completedDir)) {
      const m = MARKER_FILE.exec(name);
      if (m?.[1] !== undefined) markers.add(Number(m[1]));
    }
    // Marker contents (a leftover marker of a running, dropped or batched sample is harmless:
    // listCompleted checks the record; a corrupt one is reported).
    await mapLimit([...markers], this.concurrency, async (id) => {
      const path = this.markerPath(id);
      const text = await readIfExists(path);
      if (text === undefined) return;
      try {
        const marker = parseStoreFile(completedMarkerSchema, text, `completion marker of sample ${id}`, path, id);
        if (marker.id !== id) violations.push(`sample ${id}: completion marker ${path} names sample ${marker.id}`);
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        violations.push(`sample ${id}: ${err.message}`);
      }
    });

    // Manifests, read fresh.
    const manifests = new Map<number, BatchManifest>();
    for (const iteration of await this.listBatches()) {
      try {
        manifests.set(iteration, await this.loadManifest(iteration));
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        violations.push(`batch ${iteration}: unreadable: ${err.message}`);
      }
    }
    const batchesOf = new Map<number, number[]>();
    for (const [iteration, manifest] of manifests) {
      const seen = new Set<number>();
      const batchRecords: SampleRecord[] = [];
      let tokensKnown = true;
      for (const id of manifest.sampleIds) {
        if (seen.has(id)) violations.push(`batch ${iteration}: lists sample ${id} twice`);
        seen.add(id);
        batchesOf.set(id, [...(batchesOf.get(id) ?? []), iteration]);
        const record = records.get(id);
        if (record === undefined) {
          tokensKnown = false;
          if (!onDisk.has(id)) violations.push(`batch ${iteration}: sample ${id} has no record (no file ${this.samplePath(id)}, no admission)`);
          continue;
        }
        batchRecords.push(record);
        if (record.batch !== iteration) {
          violations.push(
            `batch ${iteration}: sample ${id} has batch ${record.batch === undefined ? 'unset' : record.batch}, expected ${iteration}`,
          );
        }
        if (record.status !== 'completed') violations.push(`batch ${iteration}: sample ${id} has status ${record.status}`);
      }
      if (!tokensKnown) continue;
      const held = batchContextFigures(batchRecords);
      if (held.totalTokens !== manifest.totalTokens) violations.push(`batch ${iteration}: totalTokens ${manifest.totalTokens} but its samples hold ${held.totalTokens}`);
      if (manifest.totalTokensSquared !== undefined && held.totalTokensSquared !== manifest.totalTokensSquared) {
        violations.push(`batch ${iteration}: totalTokensSquared ${manifest.totalTokensSquared} but its samples' contexts square to ${held.totalTokensSquared}`);
      }
    }
    for (const [id, iterations] of batchesOf) {
      if (iterations.length > 1) violations.push(`sample ${id}: in ${iterations.length} batches (${iterations.join(', ')})`);
    }

    const report: AuditReport = { samples: sampleIds.length, completed: 0, running: 0, dropped: {}, batched: 0, batches: manifests.size, violations };
    for (const record of records.values()) {
      if (record.status === 'completed') report.completed += 1;
      else if (record.status === 'running') report.running += 1;
      else {
        const reason = record.dropReason ?? '';
        report.dropped[reason] = (report.dropped[reason] ?? 0) + 1;
      }
      if (record.batch !== undefined) {
        report.batched += 1;
        const manifest = manifests.get(record.batch);
        if (manifest === undefined) {
          violations.push(`sample ${record.id}: has batch ${record.batch} but there is no manifest ${this.batchPath(record.batch)}`);
        } else if (!manifest.sampleIds.includes(record.id)) {
          violations.push(`sample ${record.id}: has batch ${record.batch} but batch ${record.batch} does not list it`);
        }
      } else if (record.status === 'completed' && !batchesOf.has(record.id) && !markers.has(record.id)) {
        violations.push(`sample ${record.id}: completed and unbatched but has no marker ${this.markerPath(record.id)} (invisible to listCompleted)`);
      }
    }

    for (const id of expected.admittedIds ?? []) {
      if (!onDisk.has(id)) violations.push(`sample ${id}: admitted but has no record (no file ${this.samplePath(id)}, no admission)`);
    }
    if (expected.requireSettled) {
      for (const id of expected.admittedIds ?? sampleIds) {
        const record = records.get(id);
        if (record === undefined) continue; // already reported
        const settled = record.status === 'dropped' || (record.batch !== undefined && batchesOf.has(id));
        if (!settled) violations.push(`sample ${id}: not settled (status ${record.status}, not in a batch, not dropped)`);
      }
    }
    return report;
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  private ensureDirs(): Promise<void> {
    this.dirsReady ??= (async () => {
      for (const dir of [this.samplesDir, this.admissions.dir, this.admissions.supersededDir, this.completedDir, this.batchesDir, this.locksDir]) {
        await fs.mkdir(dir, { recursive: true });
      }
    })().catch((err: unknown) => {
      this.dirsReady = undefined;
      throw err;
    });
    return this.dirsReady;
  }

  private checkShardId(shardId: string): string {
    if (!shardIdSchema.safeParse(shardId).success) {
      throw new InvalidInputError('shard id', this.samplesDir, `must be a string of 1..200 characters, got ${JSON.stringify(shardId)}`);
    }
    return shardId;
  }

  /** Validates a record handed in by a caller (input, not disk). */
  private validateInput(record: SampleRecord, what: string): SampleRecord {
    const id = typeof record?.id === 'number' ? record.id : -1;
    const parsed = sampleRecordSchema.safeParse(record);
    if (!parsed.success) {
      throw new InvalidInputError(`${what} ${id}`, id >= 0 ? this.samplePath(id) : this.samplesDir, z.prettifyError(parsed.error).replace(/\n/g, '; '));
    }
    return parsed.data;
  }

  /** The sample's own file, or else its admission's record while it has had no file of its own. */
  private async loadSample(id: number, admissions = this.admissions): Promise<SampleRecord> {
    return (await this.loadSampleFrom(id, admissions)).record;
  }

  /** loadSample, and whether the record came from its admission (the sample has no file of its own yet). */
  private async loadSampleFrom(id: number, admissions = this.admissions): Promise<{ record: SampleRecord; fromAdmission: boolean }> {
    const path = this.samplePath(id);
    const text = await readIfExists(path);
    if (text === undefined) {
      const admitted = admissions.superseded(id) ? undefined : admissions.recordOf(id);
      if (admitted === undefined) throw new SampleNotFoundError(id, path);
      return { record: admitted, fromAdmission: true };
    }
    const record = parseStoreFile(sampleRecordSchema, text, `sample ${id}`, path, id);
    if (record.id !== id) throw new StoreCorruptionError(`sample ${id}`, path, `file holds sample ${record.id}`, id);
    return { record, fromAdmission: false };
  }

  private async writeSample(record: SampleRecord): Promise<void> {
    // Never write what could not be read back.
    await this.writeValidSample(this.validateInput(record, 'sample'));
  }

  /** Writes a record the caller has just validated (validateInput), owner included. */
  private async writeValidSample(record: SampleRecord): Promise<void> {
    await this.ensureDirs();
    await atomicWrite(this.samplePath(record.id), JSON.stringify(record), this.sync);
  }

  private async loadManifest(iteration: number): Promise<BatchManifest> {
    const path = this.batchPath(iteration);
    const text = await readIfExists(path);
    if (text === undefined) throw new BatchNotFoundError(iteration, path);
    const manifest = parseStoreFile(batchManifestSchema, text, `batch ${iteration}`, path);
    if (manifest.iteration !== iteration) {
      throw new StoreCorruptionError(`batch ${iteration}`, path, `file holds batch ${manifest.iteration}`);
    }
    return manifest;
  }

  private cacheManifest(manifest: BatchManifest): void {
    keepNewest(this.recentManifests, manifest.iteration, manifest, RECENT_MANIFESTS);
    if (this.indexed.has(manifest.iteration)) return;
    this.indexed.add(manifest.iteration);
    for (const id of manifest.sampleIds) this.manifestOf.add(id, manifest.iteration);
  }

  /** Reads manifests written since the last call (by this or another process). */
  private async refreshManifests(): Promise<void> {
    const fresh = (await this.listBatches()).filter((iteration) => !this.indexed.has(iteration));
    const loaded = await mapLimit(fresh, this.concurrency, (iteration) => this.loadManifest(iteration));
    loaded.forEach((m) => this.cacheManifest(m));
  }

  private async isInAnyManifest(id: number): Promise<boolean> {
    await this.refreshManifests();
    return this.manifestOf.has(id);
  }

  private checkSameBatch(manifest: BatchManifest, fromVersion: number, ids: readonly number[]): void {
    const path = this.batchPath(manifest.iteration);
    const have = sortedIds(manifest.sampleIds);
    const want = sortedIds(ids);
    const haveSet = new Set(have);
    const wantSet = new Set(want);
    const missing = want.filter((id) => !haveSet.has(id));
    const extra = have.filter((id) => !wantSet.has(id));
    if (missing.length > 0 || extra.length > 0) {
      throw new BatchConflictError(
        manifest.iteration,
        path,
        `batch ${manifest.iteration} already sealed with different samples ` +
          `(not in it: ${JSON.stringify(missing)}; only in it: ${JSON.stringify(extra)})`,
        missing[0] ?? extra[0],
      );
    }
    if (manifest.fromVersion !== fromVersion) {
      throw new BatchConflictError(
        manifest.iteration,
        path,
        `batch ${manifest.iteration} already sealed from version ${manifest.fromVersion}, not ${fromVersion}`,
      );
    }
  }

  private async withSampleLock<T>(id: number, fn: () => Promise<T>): Promise<T> {
    await this.ensureDirs();
    return withFileLock(join(this.locksDir, `sample-${id}.lock`), this.lockOptions, fn);
  }

  private async withBatchesLock<T>(fn: () => Promise<T>): Promise<T> {
    await this.ensureDirs();
    return withFileLock(join(this.locksDir, 'batches.lock'), this.lockOptions, fn);
  }
}
