import { readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/validation/patterns';
import {
  BatchConflictError,
  BatchNotFoundError,
  FencingError,
  CREATE_WAVE,
  FsTrajectoryStore,
  InvalidInputError,
  SampleNotFoundError,
  SampleStateError,
  StoreCorruptionError,
  type SampleRecord,
  type TrajectoryStore,
} from '../../src/store';
import { atomicWrite, errnoCode, isTempName, MissingDirectoryError } from '../../src/store/fsUtil';
import { sample, tempStore, turn, withTurns, type TempStore } from './helpers';

let t: TempStore;
let store: FsTrajectoryStore;

beforeEach(async () => {
  t = await tempStore();
  store = t.store;
});
afterEach(async () => {
  await t.cleanup();
});

/** Creates, claims and completes samples; returns them. */
async function completed(ids: number[], times: number[], shard = 'shard-a'): Promise<void> {
  await store.createSamples(ids.map((id) => sample(id)));
  await store.claim(ids, shard);
  for (const [i, id] of ids.entries()) {
    await store.checkpoint(withTurns(await store.readSample(id), 2), shard);
    await store.markCompleted(id, shard, 1, times[i] ?? 0);
  }
}

describe('layout and round trips', () => {
  it('implements TrajectoryStore and stores each sample under <root>/<runId>/samples', async () => {
    const asInterface: TrajectoryStore = store;
    const records = [sample(0), sample(7, { promptTokens: 3, partial: { turn: 0, tokens: 4, weightVersion: 0, rank: 1 } })];
    const result = await asInterface.createSamples(records);
    expect(result).toEqual({ created: [0, 7], existing: [] });
    expect(await store.readSample(7)).toEqual(records[1]);
    expect(await store.readSamples([7, 0])).toEqual([records[1], records[0]]);
    expect((await readdir(join(t.root, 'run-1'))).sort()).toEqual(['admissions', 'batches', 'completed', 'locks', 'samples']);
    expect((await readdir(join(t.root, 'run-1', 'samples'))).sort()).toEqual(['0.json', '7.json']);
    expect(store.samplePath(7)).toBe(join(t.root, 'run-1', 'samples', '7.json'));
  });

  it('rejects run ids that could escape the root, and invalid ids / records', async () => {
    expect(() => new FsTrajectoryStore(t.root, '../evil')).toThrow(InvalidInputError);
    expect(() => new FsTrajectoryStore(t.root, 'a/b')).toThrow(InvalidInputError);
    await expect(store.readSample(-1)).rejects.toThrow(ValidationError);
    await expect(store.readSample(1.5)).rejects.toThrow(ValidationError);
    await expect(store.createSamples([sample(1), sample(1)])).rejects.toThrow(/VAL_NO_DUPLICATES/);
    await expect(store.createSamples([sample(1, { turns: [turn(1)] })])).rejects.toThrow(InvalidInputError);
    await expect(store.createSamples([sample(1, { status: 'dropped', dropReason: 'x' })])).rejects.toThrow(InvalidInputError);
  });

  it('missing sample: SampleNotFoundError naming the id and the path', async () => {
    const err = await store.readSample(42).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SampleNotFoundError);
    expect((err as Error).message).toContain('sample 42');
    expect((err as Error).message).toContain(store.samplePath(42));
    await store.createSamples([sample(1)]);
    await expect(store.readSamples([1, 43])).rejects.toThrow(SampleNotFoundError);
  });

  it('a deleted store folder: the error names the folder, not a temp file', async () => {
    const dir = join(t.root, 'run-1', 'batches');
    await rm(dir, { recursive: true, force: true });
    const err = await atomicWrite(join(dir, '0.json'), '{}').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingDirectoryError);
    expect(String(err)).toContain(`store directory ${dir} is missing`);
    expect(String(err)).not.toMatch(/\.tmp/);
    expect(errnoCode(err)).toBe('ENOENT');
  });
});

describe('idempotent create', () => {
  it('a retried create never resets progress', async () => {
    await store.createSamples([sample(1), sample(2)]);
    await store.claim([1], 'shard-a');
    const progressed = await store.checkpoint(
      { ...withTurns(await store.readSample(1), 3), partial: { turn: 3, tokens: 17, weightVersion: 1, rank: 2 } },
      'shard-a',
    );
    const result = await store.createSamples([sample(1), sample(2), sample(3)]);
    expect(result).toEqual({ created: [3], existing: [1, 2] });
    expect(await store.readSample(1)).toEqual(progressed);
    expect((await store.readSample(1)).owner).toBe('shard-a');
  });

  it('refuses to reuse an id for a different sample', async () => {
    await store.createSamples([sample(1)]);
    await expect(store.createSamples([sample(1, { promptTokens: 999 })])).rejects.toThrow(SampleStateError);
  });

  it('writes in waves of CREATE_WAVE: a wave that fails begins no later one', async () => {
    // Id 5, in the first wave, is taken by a different sample: that wave fails.
    await store.createSamples([sample(5, { promptTokens: 999 })]);
    const ids = Array.from({ length: 3 * CREATE_WAVE }, (_, i) => i);
    await expect(store.createSamples(ids.map((id) => sample(id)))).rejects.toThrow(SampleStateError);
    // Give any write still under way the time to land: none of a later wave may.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await store.listSampleIds()).toEqual(ids.slice(0, CREATE_WAVE));
  });
});

describe('findSampleIdsFrom: what an interrupted admission left, without listing the store', () => {
  it('finds the complete prefix and the partial wave after it', async () => {
    await store.createSamples(Array.from({ length: 40 }, (_, i) => sample(i)));
    expect(await store.findSampleIdsFrom(0)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(await store.findSampleIdsFrom(40)).toEqual([]);
    // An admission from 40 interrupted in its second wave: 40-71 written, 72 and 75 not, 73, 74 and 76 written.
    await store.createSamples([...Array.from({ length: 32 }, (_, i) => sample(40 + i)), sample(73), sample(74), sample(76)]);
    expect(await store.findSampleIdsFrom(40)).toEqual([...Array.from({ length: 32 }, (_, i) => 40 + i), 73, 74, 76]);
    expect(await store.findSampleIdsFrom(72)).toEqual([73, 74, 76]);
  });

  it('looks one wave past the first missing id, no further (what the waves guarantee)', async () => {
    await store.createSamples([sample(10 + CREATE_WAVE - 1), sample(10 + CREATE_WAVE)]);
    expect(await store.findSampleIdsFrom(10)).toEqual([10 + CREATE_WAVE - 1]);
    await expect(store.findSampleIdsFrom(-1)).rejects.toThrow(ValidationError);
  });
});

describe('claims and fencing', () => {
  it('only the owner may checkpoint; a zombie shard after re-sharding is fenced off', async () => {
    await store.createSamples([sample(1)]);
    // Nobody owns it yet.
    await expect(store.checkpoint(withTurns(sample(1), 1), 'shard-a')).rejects.toThrow(FencingError);

    await store.claim([1], 'shard-a');
    await store.checkpoint(withTurns(await store.readSample(1), 1), 'shard-a');
    await store.claim([1], 'shard-b'); // re-shard
    const zombie = await store.checkpoint(withTurns(await store.readSample(1), 1), 'shard-a').catch((e: unknown) => e);
    expect(zombie).toBeInstanceOf(FencingError);
    expect((zombie as Error).message).toContain('sample 1');
    expect((zombie as Error).message).toContain(store.samplePath(1));
    expect((zombie as Error).message).toContain('shard-b');
    await expect(store.markCompleted(1, 'shard-a', 1, 5)).rejects.toThrow(FencingError);

    const record = await store.checkpoint(withTurns(await store.readSample(1), 1), 'shard-b');
    expect(record.turns).toHaveLength(2);
    expect((await store.readSample(1)).owner).toBe('shard-b');
  });

  it('a claim from a named owner takes only its samples: one another shard took since is refused, nothing claimed', async () => {
    await store.createSamples([sample(1), sample(2)]);
    await store.claim([1, 2], 'shard-a@1');
    await store.claim([2], 'shard-a@2'); // a newer attempt took sample 2
    const refused = await store.claim([1, 2], 'shard-a@1.1', { from: 'shard-a@1' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(FencingError);
    expect((refused as Error).message).toContain('sample 2');
    expect((refused as Error).message).toContain('"shard-a@2"');
    // Checked before anything changed: sample 1 is still the failed run's.
    expect((await store.readSamples([1, 2])).map((record) => record.owner)).toEqual(['shard-a@1', 'shard-a@2']);
    // From its own owner, or already its own: taken (idempotent).
    await store.claim([1], 'shard-a@1.1', { from: 'shard-a@1' });
    await store.claim([1], 'shard-a@1.1', { from: 'shard-a@1' });
    expect((await store.readSample(1)).owner).toBe('shard-a@1.1');
  });

  it('re-claim by the same shard is a no-op (the file is not rewritten)', async () => {
    await store.createSamples([sample(1)]);
    await store.claim([1], 'shard-a');
    const before = await stat(store.samplePath(1));
    await store.claim([1], 'shard-a');
    const after = await stat(store.samplePath(1));
    expect(after.ino).toBe(before.ino); // atomic writes replace the inode; same inode = not rewritten
  });

  it('claiming a completed, dropped or batched sample is an error naming it; nothing is half-claimed', async () => {
    await completed([1, 2], [10, 11]);
    await store.createSamples([sample(3), sample(4)]);
    await store.dropSamples([3], 'stale');
    await store.sealBatch(0, 0, [2], 20);
    for (const [id, status] of [[1, 'completed'], [2, 'batch 0'], [3, 'dropped']] as const) {
      const err = await store.claim([4, id], 'shard-z').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SampleStateError);
      expect((err as Error).message).toContain(`sample ${id}`);
      expect((err as Error).message).toContain(status);
    }
    expect((await store.readSample(4)).owner).toBeUndefined();
    await expect(store.claim([4, 99], 'shard-z')).rejects.toThrow(SampleNotFoundError);
    expect((await store.readSample(4)).owner).toBeUndefined();
  });

  it('checkpoints cannot lose turns, rewrite history, or change identity', async () => {
    await store.createSamples([sample(1)]);
    await store.claim([1], 'a');
    const three = await store.checkpoint(withTurns(await store.readSample(1), 3), 'a');
    await expect(store.checkpoint(withTurns(sample(1, { owner: 'a' }), 2), 'a')).rejects.toThrow(/would lose turns/);
    const rewritten = { ...three, turns: three.turns.map((x, i) => (i === 1 ? { ...x, generatedTokens: 999 } : x)) };
    await expect(store.checkpoint(rewritten, 'a')).rejects.toThrow(/turn 1 differs/);
    await expect(store.checkpoint({ ...three, promptTokens: 1 }, 'a')).rejects.toThrow(/promptTokens changed/);
    await expect(store.checkpoint({ ...three, status: 'completed', reward: 1, completedAtMs: 5 }, 'a')).rejects.toThrow(InvalidInputError);
    // A partial turn (cancellation) round-trips, and the next checkpoint may complete it.
    const partial = await store.checkpoint({ ...three, partial: { turn: 3, tokens: 40, weightVersion: 2, rank: 5 } }, 'a');
    expect((await store.readSample(1)).partial).toEqual(partial.partial);
    await store.claim([1], 'b');
    await store.checkpoint(withTurns(await store.readSample(1), 1, 6), 'b');
    const after = await store.readSample(1);
    expect(after.partial).toBeUndefined();
    expect(after.turns).toHaveLength(4);
  });
});

describe('completion', () => {
  it('markCompleted clears the partial turn, writes the marker, and is idempotent', async () => {
    await store.createSamples([sample(1)]);
    await store.claim([1], 'a');
    await store.checkpoint({ ...withTurns(await store.readSample(1), 2), partial: { turn: 2, tokens: 3, weightVersion: 0, rank: 0 } }, 'a');
    const done = await store.markCompleted(1, 'a', 0.5, 1234);
    expect(done).toMatchObject({ status: 'completed', reward: 0.5, completedAtMs: 1234 });
    expect(done.partial).toBeUndefined();
    expect(JSON.parse(await readFile(store.markerPath(1), 'utf8'))).toEqual({ id: 1, completedAtMs: 1234 });
    // Retry with a later clock and another reward: the first completion stands.
    expect(await store.markCompleted(1, 'a', 0.9, 9999)).toEqual(done);
    expect(await store.readSample(1)).toEqual(done);
    // A checkpoint after completion is refused.
    await expect(store.checkpoint(withTurns(sample(1, { owner: 'a' }), 3), 'a')).rejects.toThrow(SampleStateError);
  });

  it('completeSample writes the last turns and the completion in one step, continuing the record on disk', async () => {
    await store.createSamples([sample(1), sample(2)]);
    await store.claim([1, 2], 'a');
    await store.checkpoint({ ...withTurns(await store.readSample(1), 1), partial: { turn: 1, tokens: 3, weightVersion: 0, rank: 0 } }, 'a');
    const last = withTurns(await store.readSample(1), 1, 3);
    const done = await store.completeSample(last, 'a', 0.25, 777);
    expect(done).toMatchObject({ status: 'completed', reward: 0.25, completedAtMs: 777, owner: 'a' });
    expect(done.partial).toBeUndefined();
    expect(done.turns).toEqual(last.turns);
    expect(await store.readSample(1)).toEqual(done);
    expect(JSON.parse(await readFile(store.markerPath(1), 'utf8'))).toEqual({ id: 1, completedAtMs: 777 });
    expect(await store.listCompleted([1, 2])).toEqual([1]);
    // A retry keeps the first completion.
    expect(await store.completeSample(last, 'a', 0.9, 9999)).toEqual(done);
    // Like a checkpoint: fenced by the owner, and never losing or changing a turn on disk.
    await expect(store.completeSample(withTurns(await store.readSample(2), 1), 'b', 1, 1)).rejects.toThrow(FencingError);
    await store.checkpoint(withTurns(await store.readSample(2), 2), 'a');
    await expect(store.completeSample(withTurns(sample(2, { owner: 'a' }), 1), 'a', 1, 1)).rejects.toThrow(/would lose turns/);
    const onDisk = await store.readSample(2);
    const changed = { ...onDisk, turns: [{ ...onDisk.turns[0]!, generatedTokens: onDisk.turns[0]!.generatedTokens + 1 }, onDisk.turns[1]!] };
    await expect(store.completeSample(changed, 'a', 1, 1)).rejects.toThrow(/turn 0 differs/);
    await expect(store.completeSample({ ...onDisk, status: 'completed' }, 'a', 1, 1)).rejects.toThrow(InvalidInputError);
    // Nothing of the refused completions was written.
    expect(await store.readSample(2)).toEqual(onDisk);
    expect(await store.listCompleted([2])).toEqual([]);
  });

  it('a claim removes a marker a crash left beside a running record; completeSample refuses a reward its final turn contradicts', async () => {
    await store.createSamples([sample(1)]);
    await store.claim([1], 'a@1');
    // The crash between a completion's two writes: the marker is there, the record still running.
    await atomicWrite(store.markerPath(1), JSON.stringify({ id: 1, completedAtMs: 5 }));
    expect(await store.countCompletionMarkers([1])).toBe(1);
    expect(await store.listCompleted([1])).toEqual([]);
    await store.claim([1], 'a@2');
    expect(await store.countCompletionMarkers([1])).toBe(0);
    const last = withTurns(await store.readSample(1), 1);
    const withFinal = { ...last, turns: [{ ...last.turns[0]!, final: { reward: 0.5 } }] };
    await expect(store.completeSample(withFinal, 'a@2', 1, 9)).rejects.toThrow(/reward 1 differs from its final turn's 0.5/);
    expect((await store.completeSample(withFinal, 'a@2', 0.5, 9)).reward).toBe(0.5);
  });

  it('a retry re-creates a marker lost in a crash', async () => {
    await completed([1], [50]);
    await unlink(store.markerPath(1)); // lost in a crash
    expect(await store.listCompleted([1])).toEqual([]);
    expect((await store.audit()).violations.join('\n')).toMatch(/sample 1: .*no marker/);
    await store.markCompleted(1, 'shard-a', 1, 60);
    expect(await store.listCompleted([1])).toEqual([1]);
    expect((await store.audit()).violations).toEqual([]);
  });

  it('listCompleted orders by (completedAtMs, id), filters candidates, skips batched and dropped', async () => {
    await completed([5, 3, 9, 1, 4], [30, 10, 10, 20, 40]);
    await store.createSamples([sample(8)]);
    expect(await store.listCompleted([1, 3, 4, 5, 8, 9, 77])).toEqual([3, 9, 1, 5, 4]);
    expect(await store.listCompleted([5, 9])).toEqual([9, 5]);
    expect(await store.listCompleted()).toEqual([3, 9, 1, 5, 4]);
    await store.sealBatch(0, 0, [3, 9], 100);
    await store.dropSamples([4], 'too stale');
    expect(await store.listCompleted([1, 3, 4, 5, 8, 9])).toEqual([1, 5]);
    expect((await readdir(join(t.root, 'run-1', 'completed'))).filter((name) => !isTempName(name)).sort()).toEqual(['1', '5']);
  });

  it('writeBatchManifest seals without marking; sealBatch marks after, and the audit is clean', async () => {
    await completed([1, 2, 3], [10, 20, 30]);
    const manifest = await store.writeBatchManifest(0, 0, [1, 2], 100);
    expect((await store.readBatch(0)).sampleIds).toEqual(manifest.sampleIds);
    expect((await store.readSample(1)).batch).toBeUndefined();
    expect(await store.listCompleted([1, 2, 3])).toEqual([3]);
    await expect(store.writeBatchManifest(0, 0, [1, 3], 100)).rejects.toThrow(BatchConflictError);
    expect((await store.audit()).violations).toContain('batch 0: sample 1 has batch unset, expected 0');
    await store.sealBatch(0, 0, [1, 2], 100);
    expect((await store.readSample(2)).batch).toBe(0);
    expect((await store.audit()).violations).toEqual([]);
  });

  it('countCompletionMarkers counts the marked candidates only, never fewer than listCompleted finds', async () => {
    await completed([5, 3, 9], [30, 10, 10]);
    await store.createSamples([sample(8)]);
    expect(await store.countCompletionMarkers([3, 5, 8, 9, 77])).toBe(3);
    expect(await store.countCompletionMarkers([8, 77])).toBe(0);
    await store.sealBatch(0, 0, [3], 100);
    expect(await store.countCompletionMarkers([3, 5, 9])).toBe(2);
    expect(await store.listCompleted([3, 5, 9])).toHaveLength(2);
    await expect(store.countCompletionMarkers([-1])).rejects.toThrow();
  });

  it('watchCompletions names each sample whose marker appears, until stopped', async () => {
    await store.createSamples([sample(1), sample(2)]);
    await store.claim([1, 2], 'a');
    const seen = new Set<number | undefined>();
    let notify = (): void => undefined;
    const stop = await store.watchCompletions((id) => {
      seen.add(id);
      notify();
    });
    const sawBoth = new Promise<void>((resolve) => (notify = () => seen.has(1) && seen.has(2) && resolve()));
    await store.markCompleted(1, 'a', 1, 5);
    await store.markCompleted(2, 'a', 1, 6);
    await sawBoth;
    stop();
    seen.clear();
    await store.sealBatch(0, 0, [1, 2], 7); // removes both markers: no call after the stop
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect([...seen]).toEqual([]);
  });

  it('a marker left by a crash before the record was written is ignored', async () => {
    await store.createSamples([sample(1)]);
    await store.claim([1], 'a');
    await writeFile(store.markerPath(1), JSON.stringify({ id: 1, completedAtMs: 5 }));
    expect(await store.listCompleted([1])).toEqual([]);
    await store.markCompleted(1, 'a', 1, 6); // the retry
    expect(await store.listCompleted([1])).toEqual([1]);
    expect((await store.readSample(1)).completedAtMs).toBe(6);
  });
});

describe('sealing batches (exactly once)', () => {
  it('writes the manifest, assigns the samples, and is idempotent', async () => {
    await completed([1, 2, 3], [1, 2, 3]);
    const manifest = await store.sealBatch(4, 2, [2, 1], 500);
    // Each sample: 2 turns of 10 generated tokens at v0, trained from v2: 40 tokens at lag 2.
    // Σ and Σ² of the samples' contexts (the admission's KV cap estimates from both).
    expect(manifest).toEqual({
      iteration: 4,
      fromVersion: 2,
      sampleIds: [2, 1],
      totalTokens: 2 * (100 + 2 * 15),
      totalTokensSquared: 2 * (100 + 2 * 15) ** 2,
      createdAtMs: 500,
      tokenLags: { 2: 40 },
    });
    expect(await store.readBatch(4)).toEqual(manifest);
    expect(JSON.parse(await readFile(store.batchPath(4), 'utf8'))).toEqual(manifest);
    expect((await store.readSamples([1, 2, 3])).map((r) => r.batch)).toEqual([4, 4, undefined]);
    // Retry (ids in another order, later clock): same manifest back.
    expect(await store.sealBatch(4, 2, [1, 2], 900)).toEqual(manifest);
    expect(await store.listBatches()).toEqual([4]);
    // A fresh store instance (another process) sees the same.
    const other = new FsTrajectoryStore(t.root, 'run-1');
    expect(await other.sealBatch(4, 2, [1, 2], 901)).toEqual(manifest);
    expect((await store.audit({ admittedIds: [1, 2, 3] })).violations).toEqual([]);
  });

  it('a retry with different samples or version is refused', async () => {
    await completed([1, 2, 3], [1, 2, 3]);
    await store.sealBatch(0, 0, [1, 2], 10);
    const err = await store.sealBatch(0, 0, [1, 3], 11).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchConflictError);
    expect((err as Error).message).toContain('batch 0');
    expect((err as Error).message).toContain('[3]');
    await expect(store.sealBatch(0, 1, [1, 2], 11)).rejects.toThrow(/from version 0, not 1/);
  });

  it('a sample already in a different batch is an error naming both batches', async () => {
    await completed([1, 2, 3], [1, 2, 3]);
    await store.sealBatch(0, 0, [1, 2], 10);
    const err = await store.sealBatch(1, 1, [3, 2], 20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchConflictError);
    expect((err as BatchConflictError).sampleId).toBe(2);
    expect((err as Error).message).toMatch(/cannot seal batch 1 .*sample 2 is already in batch 0/);
    // Nothing of batch 1 was written.
    await expect(store.readBatch(1)).rejects.toThrow(BatchNotFoundError);
    expect((await store.readSample(3)).batch).toBeUndefined();
  });

  it('remembers the members of every batch read, beyond the few manifests it keeps whole', async () => {
    const batches = 12;
    const ids = Array.from({ length: batches * 2 + 1 }, (_, i) => i);
    await completed(ids, ids);
    for (let k = 0; k < batches; k++) await store.sealBatch(k, k, [2 * k, 2 * k + 1], 100 + k);
    for (const reader of [store, new FsTrajectoryStore(t.root, 'run-1')]) {
      // Batch 0 is the oldest, long out of the manifests kept whole.
      const err = await reader.sealBatch(batches, batches, [batches * 2, 1], 500).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BatchConflictError);
      expect((err as Error).message).toMatch(/sample 1 is already in batch 0/);
      expect(await reader.listCompleted(ids)).toEqual([batches * 2]);
      expect((await reader.readBatch(0)).sampleIds).toEqual([0, 1]);
      // The retry of an old seal finds its manifest again and accepts only the same samples.
      await expect(reader.sealBatch(1, 1, [2, 3], 600)).resolves.toMatchObject({ iteration: 1, sampleIds: [2, 3], createdAtMs: 101 });
      await expect(reader.sealBatch(1, 1, [2, 4], 600)).rejects.toThrow(/batch 1 already sealed with different samples/);
    }
  });

  it('only completed samples can be sealed; inputs are validated', async () => {
    await completed([1], [1]);
    await store.createSamples([sample(2)]);
    await expect(store.sealBatch(0, 0, [1, 2], 10)).rejects.toThrow(/sample 2 .*status is running/);
    await expect(store.sealBatch(0, 0, [1, 404], 10)).rejects.toThrow(SampleNotFoundError);
    await expect(store.sealBatch(0, 0, [], 10)).rejects.toThrow(/VAL_NON_EMPTY/);
    await expect(store.sealBatch(0, 0, [1, 1], 10)).rejects.toThrow(/VAL_NO_DUPLICATES/);
    await expect(store.sealBatch(-1, 0, [1], 10)).rejects.toThrow(/VAL_INT_RANGE/);
    await expect(store.readBatch(0)).rejects.toThrow(BatchNotFoundError);
  });

  it('crash after the manifest, before the records: the manifest rules until the retry finishes', async () => {
    await completed([1, 2, 3], [1, 2, 3]);
    await store.sealBatch(0, 0, [1, 2], 10);
    // Simulate the crash: sample 2's record and marker as they were before the seal.
    const two = await store.readSample(2);
    const { batch: _batch, ...unbatched } = two;
    await writeFile(store.samplePath(2), JSON.stringify(unbatched));
    await writeFile(store.markerPath(2), JSON.stringify({ id: 2, completedAtMs: 2 }));

    const fresh = new FsTrajectoryStore(t.root, 'run-1'); // a new process, empty caches
    const audit = await fresh.audit();
    expect(audit.violations.join('\n')).toMatch(/batch 0: sample 2 has batch unset/);
    expect(await fresh.listCompleted([1, 2, 3])).toEqual([3]);
    await expect(fresh.sealBatch(1, 1, [2, 3], 20)).rejects.toThrow(/sample 2 is already in batch 0/);
    await expect(fresh.dropSamples([2], 'x')).rejects.toThrow(/sample 2 .*in batch 0/);
    await fresh.sealBatch(0, 0, [1, 2], 30); // the retry
    expect((await fresh.readSample(2)).batch).toBe(0);
    expect((await fresh.audit()).violations).toEqual([]);
  });
});

describe('dropping', () => {
  it('drops with a reason, idempotently (the first reason stays); batched samples cannot be dropped', async () => {
    await completed([1, 2], [1, 2]);
    await store.createSamples([sample(3), sample(4)]);
    await store.claim([3], 'a');
    await store.sealBatch(0, 0, [1], 5);

    await store.dropSamples([2, 3], 'stale: version lag 2 > 1');
    await store.dropSamples([2, 3], 'another reason');
    expect((await store.readSamples([2, 3])).map((r) => [r.status, r.dropReason])).toEqual([
      ['dropped', 'stale: version lag 2 > 1'],
      ['dropped', 'stale: version lag 2 > 1'],
    ]);
    expect(await store.listCompleted([1, 2])).toEqual([]);

    const err = await store.dropSamples([4, 1], 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SampleStateError);
    expect((err as Error).message).toMatch(/sample 1 .*in batch 0/);
    expect((await store.readSample(4)).status).toBe('running'); // nothing half-dropped

    // The shard that owned a dropped sample can no longer write it.
    await expect(store.checkpoint(withTurns(sample(3, { owner: 'a' }), 1), 'a')).rejects.toThrow(/status is dropped/);
    await expect(store.markCompleted(3, 'a', 1, 9)).rejects.toThrow(/dropped/);
    await expect(store.dropSamples([4], '  ')).rejects.toThrow(InvalidInputError);
    await expect(store.dropSamples([404], 'x')).rejects.toThrow(SampleNotFoundError);

    const audit = await store.audit({ admittedIds: [1, 2, 3, 4] });
    expect(audit).toMatchObject({ samples: 4, completed: 1, running: 1, dropped: { 'stale: version lag 2 > 1': 2 }, batched: 1, batches: 1 });
    expect(audit.violations).toEqual([]);
  });
});

describe('corruption', () => {
  const cases: Array<[string, (store: FsTrajectoryStore) => string]> = [
    ['garbage bytes', () => '\u0000\u0001not json{'],
    ['truncated JSON', () => '{"id": 1, "startVer'],
    ['an empty file', () => ''],
    ['valid JSON of the wrong shape', () => JSON.stringify({ id: 1, turns: 'many' })],
    ['another sample', () => JSON.stringify(sample(2))],
    ['a broken invariant', () => JSON.stringify(sample(1, { status: 'completed' }))],
  ];
  it.each(cases)('%s: StoreCorruptionError naming the id and the path, on every read path', async (_name, content) => {
    await store.createSamples([sample(1), sample(3)]);
    await store.claim([1, 3], 'a');
    await store.markCompleted(3, 'a', 1, 1);
    await writeFile(store.samplePath(1), content(store));
    for (const attempt of [
      () => store.readSample(1),
      () => store.readSamples([3, 1]),
      () => store.claim([1], 'b'),
      () => store.checkpoint(withTurns(sample(1, { owner: 'a' }), 1), 'a'),
      () => store.markCompleted(1, 'a', 1, 2),
      () => store.dropSamples([1], 'x'),
    ]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreCorruptionError);
      expect((err as StoreCorruptionError).sampleId).toBe(1);
      expect((err as Error).message).toContain('sample 1');
      expect((err as Error).message).toContain(store.samplePath(1));
    }
    // A completion marker pointing at a corrupt file is not skipped silently either.
    await writeFile(store.markerPath(1), JSON.stringify({ id: 1, completedAtMs: 1 }));
    await expect(store.listCompleted([1, 3])).rejects.toThrow(StoreCorruptionError);
    const audit = await store.audit();
    expect(audit.violations.some((v) => v.startsWith('sample 1: unreadable') && v.includes(store.samplePath(1)))).toBe(true);
  });

  it('a corrupt batch manifest is reported naming the batch and its path', async () => {
    await completed([1, 2], [1, 2]);
    await store.sealBatch(0, 0, [1], 5);
    await writeFile(store.batchPath(0), '{"iteration": 0');
    const fresh = new FsTrajectoryStore(t.root, 'run-1');
    await expect(fresh.readBatch(0)).rejects.toThrow(StoreCorruptionError);
    await expect(fresh.readBatch(0)).rejects.toThrow(store.batchPath(0));
    await expect(fresh.listCompleted([2])).rejects.toThrow(/batch 0 is corrupt/);
    expect((await fresh.audit()).violations.join('\n')).toMatch(/batch 0: unreadable/);
  });
});

describe('audit', () => {
  it('proves a clean run settled: every admitted sample in exactly one batch or dropped', async () => {
    await completed([1, 2, 3, 4], [1, 2, 3, 4]);
    await store.createSamples([sample(5)]);
    await store.sealBatch(0, 0, [1, 2], 10);
    await store.sealBatch(1, 1, [3], 20);
    expect((await store.audit({ admittedIds: [1, 2, 3, 4, 5], requireSettled: true })).violations).toEqual([
      'sample 4: not settled (status completed, not in a batch, not dropped)',
      'sample 5: not settled (status running, not in a batch, not dropped)',
    ]);
    await store.dropSamples([4, 5], 'run ended');
    const report = await store.audit({ admittedIds: [1, 2, 3, 4, 5], requireSettled: true });
    expect(report).toEqual({ samples: 5, completed: 3, running: 0, dropped: { 'run ended': 2 }, batched: 3, batches: 2, violations: [] });
  });

  it('finds planted violations and names the samples and batches', async () => {
    await completed([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]);
    await store.sealBatch(0, 0, [1, 2], 10);
    await store.sealBatch(1, 0, [3], 10);
    const plant = async (record: SampleRecord): Promise<void> => writeFile(store.samplePath(record.id), JSON.stringify(record));
    // (a) sample 2 also listed in a second manifest (two batches).
    await writeFile(store.batchPath(7), JSON.stringify({ iteration: 7, fromVersion: 0, sampleIds: [2, 4], totalTokens: 1, totalTokensSquared: 1, createdAtMs: 1 }));
    // (b) sample 5 claims a batch that does not exist.
    await plant({ ...(await store.readSample(5)), batch: 9 });
    // (c) sample 3 says batch 0, which does not list it.
    await plant({ ...(await store.readSample(3)), batch: 0 });
    // (d) a manifest listing a sample with no file.
    await writeFile(store.batchPath(8), JSON.stringify({ iteration: 8, fromVersion: 0, sampleIds: [66], totalTokens: 0, createdAtMs: 1 }));

    const { violations } = await store.audit({ admittedIds: [1, 2, 3, 4, 5, 6] });
    const text = violations.join('\n');
    expect(text).toContain('sample 2: in 2 batches (0, 7)');
    expect(text).toContain('batch 7: sample 2 has batch 0, expected 7');
    expect(text).toContain('batch 7: sample 4 has batch unset, expected 7');
    expect(text).toContain('batch 7: totalTokens 1');
    expect(text).toContain('batch 7: totalTokensSquared 1');
    // The batches sealed through the store agree with their samples, Σ L² included.
    expect(text).not.toMatch(/batch [01]: totalTokens/);
    expect(text).toContain('sample 5: has batch 9 but there is no manifest');
    expect(text).toContain('sample 3: has batch 0 but batch 0 does not list it');
    expect(text).toContain('batch 1: sample 3 has batch 0, expected 1');
    expect(text).toContain('batch 8: sample 66 has no record');
    expect(text).toContain('sample 6: admitted but has no record');
    expect(violations).toHaveLength(10);
  });
});

describe('concurrency', () => {
  it('parallel checkpoints of different samples all land', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => i);
    await store.createSamples(ids.map((id) => sample(id)));
    await Promise.all([store.claim(ids.slice(0, 100), 'a'), store.claim(ids.slice(100), 'b')]);
    for (let round = 0; round < 3; round++) {
      const records = await store.readSamples(ids);
      await Promise.all(records.map((r) => store.checkpoint(withTurns(r, 1, r.id % 8), r.id < 100 ? 'a' : 'b')));
    }
    const after = await store.readSamples(ids);
    expect(after.every((r) => r.turns.length === 3 && r.owner === (r.id < 100 ? 'a' : 'b'))).toBe(true);
    await Promise.all(ids.map((id) => store.markCompleted(id, id < 100 ? 'a' : 'b', 1, 1000 + (id % 7))));
    const order = await store.listCompleted(ids);
    expect(order).toHaveLength(200);
    expect((await store.audit({ admittedIds: ids })).violations).toEqual([]);
  });

  it('a zombie checkpoint racing a re-claim never survives the claim', async () => {
    await store.createSamples([sample(1)]);
    await store.claim([1], 'a');
    const base = await store.readSample(1);
    const results = await Promise.allSettled([
      ...Array.from({ length: 10 }, () => store.checkpoint(withTurns(base, 1), 'a')),
      store.claim([1], 'b'),
    ]);
    const record = await store.readSample(1);
    expect(record.owner).toBe('b');
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(FencingError);
    await expect(store.checkpoint(withTurns(record, 1), 'a')).rejects.toThrow(FencingError);
  });

  it('concurrent seals of overlapping batches: exactly one wins each sample', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => i);
    await completed(ids, ids);
    const other = new FsTrajectoryStore(t.root, 'run-1'); // separate caches, same locks
    const results = await Promise.allSettled([
      store.sealBatch(0, 0, ids.slice(0, 12), 1),
      other.sealBatch(1, 0, ids.slice(8), 1),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected');
    expect(rejected?.status === 'rejected' && rejected.reason).toBeInstanceOf(BatchConflictError);
    expect((await store.audit()).violations).toEqual([]);
  });
});

describe('crash leftovers', () => {
  it('temp files from interrupted writes do not break reads, listings or the audit', async () => {
    await completed([1, 2], [1, 2]);
    await store.sealBatch(0, 0, [1], 5);
    const run = join(t.root, 'run-1');
    // What a SIGKILL between open() and rename() leaves behind.
    await writeFile(join(run, 'samples', `.2.json.${process.pid}.deadbeef0000.tmp`), '{"id": 2, "sta');
    await writeFile(join(run, 'completed', `.1.${process.pid}.deadbeef0001.tmp`), '');
    await writeFile(join(run, 'batches', `.1.json.${process.pid}.deadbeef0002.tmp`), '{"iteration": 1');
    expect((await store.readSample(2)).status).toBe('completed');
    expect(await store.listCompleted([1, 2])).toEqual([2]);
    expect(await store.listBatches()).toEqual([0]);
    const audit = await store.audit({ admittedIds: [1, 2] });
    expect(audit).toMatchObject({ samples: 2, batches: 1, violations: [] });
    await store.sealBatch(1, 1, [2], 6);
    expect((await store.audit()).violations).toEqual([]);
  });

  it('a successful write leaves no temp file behind (only this process’s spares and lock holder, removed at its exit)', async () => {
    await store.createSamples([sample(1)]);
    await store.claim([1], 'a');
    await store.checkpoint(withTurns(await store.readSample(1), 1), 'a');
    await store.markCompleted(1, 'a', 1, 1);
    await store.sealBatch(0, 0, [1], 2);
    const run = join(t.root, 'run-1');
    const ours = new RegExp(`^\\.(spare|lock-holder)\\.${process.pid}\\.`);
    for (const dir of ['samples', 'completed', 'batches', 'locks']) {
      expect((await readdir(join(run, dir))).filter((n) => n.startsWith('.') && !ours.test(n))).toEqual([]);
    }
    expect((await readdir(join(run, 'locks'))).filter((n) => !ours.test(n))).toEqual([]);
  });
});
