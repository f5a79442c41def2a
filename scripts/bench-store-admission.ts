/**
 * What an admission's records cost before its shards can start (docs/benchmarks.md, "An admission
 * as one file"): `createSamples` writes one fsync'd file per sample, `admitSamples` one file per
 * admission. Alternates the two on fresh stores (fsync on, as in a run) and prints the medians.
 *
 *   npx tsx scripts/bench-store-admission.ts [--records 512] [--repeats 9]
 *
 * The stores go under the system's temp folder (TMPDIR): a run's store is on a disk, not a tmpfs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { integerFlag } from '../src/cli/args';
import { FsTrajectoryStore, type SampleRecord } from '../src/store';

const records = integerFlag(process.argv, '--records', 512);
const repeats = integerFlag(process.argv, '--repeats', 9);
const dir = tmpdir();

function record(id: number): SampleRecord {
  return { id, status: 'running', startVersion: 0, promptTokens: 100, turns: [], startedAtMs: 0 };
}

async function timeOnce(how: 'createSamples' | 'admitSamples'): Promise<number> {
  const root = await mkdtemp(path.join(dir, 'timeshare-admission-'));
  try {
    const store = new FsTrajectoryStore(root, 'bench');
    const batch = Array.from({ length: records }, (_, id) => record(id));
    const startedAt = performance.now();
    await store[how](batch);
    return performance.now() - startedAt;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const times = { createSamples: [] as number[], admitSamples: [] as number[] };
  for (let repeat = 0; repeat < repeats; repeat++) {
    for (const how of ['createSamples', 'admitSamples'] as const) times[how].push(await timeOnce(how));
  }
  const median = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
  for (const [how, list] of Object.entries(times)) {
    console.log(`${how}: ${records} records, median ${median(list).toFixed(1)} ms (min ${Math.min(...list).toFixed(1)}, max ${Math.max(...list).toFixed(1)}; ${repeats} runs, alternating, under ${dir})`);
  }
  console.log(`ratio: createSamples / admitSamples = ${(median(times.createSamples) / median(times.admitSamples)).toFixed(1)}`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
