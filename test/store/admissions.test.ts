import { readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMISSION_CHUNK } from '../../src/store/admissions';
import { FsTrajectoryStore, InvalidInputError, SampleNotFoundError, SampleStateError, StoreCorruptionError } from '../../src/store';
import { sample, tempStore, withTurns, type TempStore } from './helpers';

let t: TempStore;
let store: FsTrajectoryStore;

beforeEach(async () => {
  t = await tempStore();
  store = t.store;
});
afterEach(async () => {
  await t.cleanup();
});

const range = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from + i);
const admissionsDir = (): string => join(t.root, 'run-1', 'admissions');
const samplesDir = (): string => join(t.root, 'run-1', 'samples');
const admissionFiles = async (): Promise<string[]> => (await readdir(admissionsDir())).filter((name) => name.endsWith('.json'));

describe('admitSamples: one file per admission', () => {
  it('writes the admission as one file and no sample file; reads serve its records', async () => {
    const records = range(0, 40).map((id) => sample(id, { promptTokens: 100 + id }));
    expect(await store.admitSamples(records)).toEqual({ created: range(0, 40), existing: [] });
    expect(await admissionFiles()).toEqual(['0.json']);
    expect(await readdir(samplesDir())).toEqual([]);
    expect(await store.readSample(17)).toEqual(records[17]);
    expect(await store.readSamples([39, 0])).toEqual([records[39], records[0]]);
    expect(await store.listSampleIds(30)).toEqual(range(30, 10));
    // Another process (a store of its own) reads the same records.
    const other = new FsTrajectoryStore(t.root, 'run-1');
    expect(await other.readSample(39)).toEqual(records[39]);
  });

  it("a sample's first change writes its own file, which supersedes the admission's record", async () => {
    await store.admitSamples(range(0, 4).map((id) => sample(id)));
    await store.claim([1], 'shard-a');
    expect(await readdir(samplesDir())).toEqual(['1.json']);
    await store.checkpoint(withTurns(await store.readSample(1), 2), 'shard-a');
    expect((await store.readSample(1)).turns).toHaveLength(2);
    // Fencing works as for any record: an admitted sample no shard has claimed has no owner.
    await expect(store.checkpoint(withTurns(await store.readSample(2), 1), 'shard-a')).rejects.toThrow(/owner|fenc/i);
    await store.dropSamples([3], 'stale');
    expect((await store.readSample(3)).status).toBe('dropped');
    expect((await readdir(samplesDir())).sort()).toEqual(['1.json', '3.json']);
  });

  it("a sample's own file, once written, is never replaced by its admission's record: a lost file is an error", async () => {
    await store.admitSamples(range(0, 3).map((id) => sample(id)));
    await store.claim([0], 'shard-a');
    await store.dropSamples([1], 'stale');
    for (const id of [0, 1]) {
      await unlink(store.samplePath(id));
      await expect(store.readSample(id)).rejects.toThrow(`sample ${id} not found (no file ${store.samplePath(id)})`);
      await expect(new FsTrajectoryStore(t.root, 'run-1').readSample(id)).rejects.toThrow(SampleNotFoundError);
    }
    await expect(store.claim([0], 'shard-b')).rejects.toThrow(SampleNotFoundError);
    expect((await store.audit()).violations).toEqual([
      `sample 0: unreadable: trajectory store: sample 0 not found (no file ${store.samplePath(0)})`,
      `sample 1: unreadable: trajectory store: sample 1 not found (no file ${store.samplePath(1)})`,
    ]);
    // The sample never claimed still reads from its admission.
    expect((await store.readSample(2)).status).toBe('running');
  });

  it('goes through a batch: the audit counts admitted samples, claimed or not', async () => {
    await store.admitSamples(range(0, 3).map((id) => sample(id)));
    await store.claim([0, 1], 'shard-a');
    for (const id of [0, 1]) {
      await store.checkpoint(withTurns(await store.readSample(id), 1), 'shard-a');
      await store.markCompleted(id, 'shard-a', 1, 5);
    }
    await store.sealBatch(0, 0, [0, 1], 10);
    const report = await store.audit({ admittedIds: [0, 1, 2] });
    expect(report).toMatchObject({ samples: 3, completed: 2, running: 1, batched: 2, violations: [] });
    // Sample 2, admitted and never started, is not settled.
    expect((await store.audit({ admittedIds: [0, 1, 2], requireSettled: true })).violations).toEqual([
      'sample 2: not settled (status running, not in a batch, not dropped)',
    ]);
  });

  it('is idempotent: a retry leaves the admission and the samples changed since as they are', async () => {
    await store.admitSamples(range(0, 3).map((id) => sample(id)));
    await store.claim([0], 'shard-a');
    const retry = await store.admitSamples(range(0, 3).map((id) => sample(id, { startedAtMs: 9_999 })));
    expect(retry).toEqual({ created: [], existing: [0, 1, 2] });
    expect((await store.readSample(0)).owner).toBe('shard-a');
    expect((await store.readSample(1)).startedAtMs).toBe(1_000);
  });

  it('refuses, before writing anything, an id another sample or admission holds', async () => {
    await store.admitSamples(range(0, 8).map((id) => sample(id)));
    await expect(store.admitSamples(range(0, 8).map((id) => sample(id, { promptTokens: 7 })))).rejects.toThrow(SampleStateError);
    await expect(store.admitSamples(range(0, 4).map((id) => sample(id)))).rejects.toThrow(/admitted before with 8 samples, now 4/);
    await expect(store.admitSamples(range(5, 8).map((id) => sample(id)))).rejects.toThrow(/already admitted from 0/);
    await store.admitSamples(range(20, 4).map((id) => sample(id)));
    await expect(store.admitSamples(range(16, 8).map((id) => sample(id)))).rejects.toThrow(/already admitted by another admission/);
    await store.createSamples([sample(30)]);
    await expect(store.admitSamples(range(28, 4).map((id) => sample(id)))).rejects.toThrow(/already used by a sample of its own/);
    expect((await admissionFiles()).sort()).toEqual(['0.json', '20.json']);
    // createSamples treats an admitted id as existing (the same sample) or refuses it.
    expect(await store.createSamples([sample(2)])).toEqual({ created: [], existing: [2] });
    await expect(store.createSamples([sample(3, { startVersion: 4 })])).rejects.toThrow(SampleStateError);
  });

  it('refuses records that are not new samples with consecutive ids', async () => {
    await expect(store.admitSamples([sample(0), sample(2)])).rejects.toThrow(/consecutive/);
    await expect(store.admitSamples([sample(0, { turns: withTurns(sample(0), 1).turns })])).rejects.toThrow(InvalidInputError);
    await expect(store.admitSamples([sample(0, { owner: 'shard-a' })])).rejects.toThrow(InvalidInputError);
    await expect(store.admitSamples([])).rejects.toThrow(/non-empty|empty/i);
  });
});

describe('admissions larger than one file, and recovery', () => {
  it('writes chunks of ADMISSION_CHUNK; lookups reach across them from any process', async () => {
    const count = 2 * ADMISSION_CHUNK + 5;
    await store.admitSamples(range(10, count).map((id) => sample(id, { promptTokens: 1 + (id % 50) })));
    expect((await admissionFiles()).sort()).toEqual([`${10 + 2 * ADMISSION_CHUNK}.json`, `${10 + ADMISSION_CHUNK}.json`, '10.json'].sort());
    const other = new FsTrajectoryStore(t.root, 'run-1');
    for (const id of [10, 10 + ADMISSION_CHUNK - 1, 10 + ADMISSION_CHUNK, 10 + count - 1]) {
      expect((await other.readSample(id)).promptTokens).toBe(1 + (id % 50));
    }
    await expect(other.readSample(9)).rejects.toThrow(/not found/);
    await expect(other.readSample(10 + count)).rejects.toThrow(/not found/);
    expect(await other.findSampleIdsFrom(10)).toEqual(range(10, count));
  });

  it('findSampleIdsFrom follows the chain of admissions, then what createSamples wrote after it', async () => {
    await store.admitSamples(range(0, 5).map((id) => sample(id)));
    await store.admitSamples(range(5, 3).map((id) => sample(id)));
    await store.createSamples([sample(8), sample(9), sample(11)]);
    expect(await store.findSampleIdsFrom(0)).toEqual([...range(0, 10), 11]);
    expect(await store.findSampleIdsFrom(5)).toEqual([5, 6, 7, 8, 9, 11]);
    expect(await store.findSampleIdsFrom(12)).toEqual([]);
  });

  it('an admission interrupted between its files leaves a prefix the recovery finds', async () => {
    await store.admitSamples(range(0, ADMISSION_CHUNK + 3).map((id) => sample(id)));
    await unlink(join(admissionsDir(), `${ADMISSION_CHUNK}.json`));
    const recovering = new FsTrajectoryStore(t.root, 'run-1');
    expect(await recovering.findSampleIdsFrom(0)).toEqual(range(0, ADMISSION_CHUNK));
    // The retry writes the rest.
    expect(await recovering.admitSamples(range(0, ADMISSION_CHUNK + 3).map((id) => sample(id)))).toEqual({
      created: range(ADMISSION_CHUNK, 3),
      existing: range(0, ADMISSION_CHUNK),
    });
  });

  it('a corrupt admission file is named by reads and reported by the audit', async () => {
    await store.admitSamples(range(0, 3).map((id) => sample(id)));
    const path = join(admissionsDir(), '0.json');
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('"firstId":0', '"firstId":1'));
    const fresh = new FsTrajectoryStore(t.root, 'run-1');
    await expect(fresh.readSample(1)).rejects.toThrow(StoreCorruptionError);
    await expect(fresh.readSample(1)).rejects.toThrow(path);
    const { violations } = await fresh.audit();
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatch(/^admission unreadable: .*admission 0 is corrupt/);
  });
});
