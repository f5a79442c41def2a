/**
 * Trajectory store: sample bodies (claim-check pattern). Workflow history carries only sample
 * ids, counts and versions; activities read and write the bodies here.
 *
 * Invariant the store proves (audit): every admitted sample ends in exactly one training batch
 * or is dropped for a stated reason.
 */
import type {
  AuditExpectations,
  AuditReport,
  BatchManifest,
  CreateSamplesResult,
  SampleRecord,
} from './types';

export * from './types';
export { CREATE_WAVE, FsTrajectoryStore, type FsTrajectoryStoreOptions } from './fsStore';
export { keepNewest } from './newest';

/** What the pipeline needs from a trajectory store; FsTrajectoryStore is the file-system backend. */
export interface TrajectoryStore {
  readonly runId: string;

  /**
   * Creates sample files; an existing file is left untouched (a retry never resets progress).
   * Interrupted, it leaves its records in id order up to a bounded frontier (findSampleIdsFrom).
   */
  createSamples(records: readonly SampleRecord[]): Promise<CreateSamplesResult>;
  /**
   * Admits new samples (running, no turns, consecutive ids) as one write: their records are read
   * as any other until each sample's first change writes a file of its own. Idempotent (a retry
   * leaves the admission written); an id already held by another sample is refused. Interrupted,
   * it leaves a prefix that findSampleIdsFrom finds.
   */
  admitSamples(records: readonly SampleRecord[]): Promise<CreateSamplesResult>;
  /** SampleNotFoundError if absent, StoreCorruptionError if unreadable. */
  readSample(id: number): Promise<SampleRecord>;
  /** In the order of `ids`. */
  readSamples(ids: readonly number[]): Promise<SampleRecord[]>;

  /**
   * Makes `shardId` the only writer of running samples (re-sharding moves ownership). Idempotent.
   * With `from`, takes only samples `from` owns (or `shardId` already does): one owned by anyone
   * else is a FencingError, before anything is claimed (a run again of a member must not take
   * back samples a newer attempt has claimed).
   */
  claim(ids: readonly number[], shardId: string, options?: { from?: string }): Promise<void>;
  /** Writes a running record if `shardId` owns it on disk, else FencingError. Returns what was written. */
  checkpoint(record: SampleRecord, shardId: string): Promise<SampleRecord>;
  /** Completes an owned sample (clears the partial turn, writes the completion marker). Idempotent. */
  markCompleted(id: number, shardId: string, reward: number, nowMs: number): Promise<SampleRecord>;
  /**
   * Completes an owned sample with its last turns: checkpoint and markCompleted as one locked
   * write of the record (the record must continue the one on disk, as a checkpoint). Idempotent.
   */
  completeSample(record: SampleRecord, shardId: string, reward: number, nowMs: number): Promise<SampleRecord>;
  /** Completed, not-yet-batched ids among the candidates (all, if omitted), by (completedAtMs, id). */
  listCompleted(candidateIds?: readonly number[]): Promise<number[]>;
  /**
   * How many candidates carry a completion marker: one directory listing, no record read. An
   * upper bound of listCompleted(candidates).length, cheap enough to poll.
   */
  countCompletionMarkers(candidateIds: readonly number[]): Promise<number>;
  /**
   * Calls `onChange` soon after a completion marker appears, with its sample id where known
   * (undefined: something changed, look). A hint to look now, not a count: it may fire for a
   * marker twice or for other changes. Returns the function that stops the watch. A store that
   * cannot watch returns a no-op stop: callers poll in any case.
   */
  watchCompletions(onChange: (sampleId: number | undefined) => void): Promise<() => void>;
  /** Drops samples for a reason; a batched sample cannot be dropped. Idempotent (the first reason stays). */
  dropSamples(ids: readonly number[], reason: string): Promise<void>;

  /** Seals an iteration's batch: manifest first, then each sample's `batch`. Idempotent; exactly-once. */
  sealBatch(iteration: number, fromVersion: number, ids: readonly number[], nowMs: number): Promise<BatchManifest>;
  /**
   * The first half of sealBatch: checks and writes the manifest only (the batch is sealed from
   * then on: listCompleted and dropSamples go by manifests). sealBatch later marks the samples.
   */
  writeBatchManifest(iteration: number, fromVersion: number, ids: readonly number[], nowMs: number): Promise<BatchManifest>;
  /** BatchNotFoundError if the iteration has no sealed batch. */
  readBatch(iteration: number): Promise<BatchManifest>;
  /** Ids of every sample on record with id >= fromId, ascending (a listing of the whole store: for tools and audits). */
  listSampleIds(fromId?: number): Promise<number[]>;
  /**
   * Ids of the samples on record with id >= fromId, ascending, where every id below fromId was
   * created (fromId is a ledger's nextSampleId): what a failed attempt admitted, found in time
   * that grows with what it admitted, not with the run's length.
   */
  findSampleIdsFrom(fromId: number): Promise<number[]>;
  /** Iterations with a sealed batch, ascending. */
  listBatches(): Promise<number[]>;

  /** Full scan proving exactly-once accounting; violations name sample ids and batches. */
  audit(expected?: AuditExpectations): Promise<AuditReport>;
}
