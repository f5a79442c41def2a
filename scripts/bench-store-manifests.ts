/**
 * What the store's batch manifests cost a process as a run grows (docs/benchmarks.md, "Store
 * manifests as a run grows"): the first store call that needs batch membership (the batch watch's
 * `listCompleted`, a drop, a seal) reads every manifest on record into memory, and later calls
 * list the batches folder and read only the new ones.
 *
 *   npx tsx --expose-gc scripts/bench-store-manifests.ts [--batches 10000] [--batch 512]
 *
 * Writes `--batches` manifests of `--batch` sample ids each into a fresh store under the system's
 * temp folder, then, in this process: the first call (cold: every manifest read), a second call
 * (warm: the folder listed), and the memory the store holds for them (JS heap and array
 * buffers). Both calls must find the one completed sample outside every batch.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FsTrajectoryStore, type BatchManifest } from '../src/store';
import { integerFlag } from '../src/cli/args';
import { mapLimit } from '../src/store/fsUtil';

const batches = integerFlag(process.argv, '--batches', 10_000);
const batchSize = integerFlag(process.argv, '--batch', 512);

function manifest(iteration: number): BatchManifest {
  const first = iteration * batchSize;
  return {
    iteration,
    fromVersion: iteration,
    sampleIds: Array.from({ length: batchSize }, (_, i) => first + i),
    totalTokens: batchSize * 20_000,
    totalTokensSquared: batchSize * 4e8,
    createdAtMs: 1_700_000_000_000 + iteration,
    tokenLags: { '0': batchSize * 15_000, '1': batchSize * 5_000 },
  };
}

function memoryMiB(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc (npx tsx --expose-gc scripts/bench-store-manifests.ts)');
  gc();
  // Typed arrays live outside the JS heap: counted in arrayBuffers.
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return (heapUsed + arrayBuffers) / 2 ** 20;
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'timeshare-bench-manifests-'));
  try {
    const store = new FsTrajectoryStore(root, 'bench', { fsync: false });
    // One completed sample beyond every batch: the call below must find it, and read every manifest to know.
    const free = batches * batchSize;
    await store.createSamples([{ id: free, status: 'running', startVersion: 0, promptTokens: 100, turns: [], startedAtMs: 0 }]);
    await store.claim([free], 'bench-shard');
    await store.markCompleted(free, 'bench-shard', 1, 1);
    await mkdir(path.dirname(store.batchPath(0)), { recursive: true });
    await mapLimit(Array.from({ length: batches }, (_, i) => i), 64, (i) => writeFile(store.batchPath(i), JSON.stringify(manifest(i))));
    console.log(`store manifests: ${batches} batches of ${batchSize} samples in ${root}`);
    const before = memoryMiB();
    const timed = async (): Promise<number> => {
      const started = performance.now();
      const found = await store.listCompleted([0, free]);
      if (JSON.stringify(found) !== JSON.stringify([free])) throw new Error(`listCompleted found ${JSON.stringify(found)}, not [${free}]`);
      return performance.now() - started;
    };
    const coldMs = await timed();
    const warmMs = await timed();
    const held = memoryMiB() - before;
    console.log('| batches | samples batched | first call ms (reads every manifest) | later call ms (lists the folder) | memory held MiB (heap + array buffers) | bytes per batched sample |');
    console.log('|---|---|---|---|---|---|');
    console.log(`| ${batches} | ${batches * batchSize} | ${coldMs.toFixed(0)} | ${warmMs.toFixed(1)} | ${held.toFixed(1)} | ${((held * 2 ** 20) / (batches * batchSize)).toFixed(1)} |`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
