/**
 * What an iteration's recovery from the store costs as a run grows (docs/benchmarks.md, "Store
 * recovery"): every iteration's first step asks the store for the samples a failed attempt may
 * have admitted (`describeSamples`, ids from the ledger's nextSampleId on). Listing the samples
 * folder grows with the run's length; probing from nextSampleId grows with what was admitted.
 *
 *   npx tsx scripts/bench-store-recovery.ts [--samples 100000] [--lost 512] [--repeats 5]
 *
 * Creates `--samples` records in a fresh store under the system's temp folder (no fsync: only
 * the lookups are timed), then times, median of `--repeats`: the folder listing and the probe
 * with nothing left behind, and both again after an admission of `--lost` records that the
 * ledger never recorded. Both must find the same ids.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FsTrajectoryStore, type SampleRecord } from '../src/store';
import { integerFlag } from '../src/cli/args';

const flag = (name: string, fallback: number): number => integerFlag(process.argv, name, fallback);

const samples = flag('--samples', 100_000);
const lost = flag('--lost', 512);
const repeats = flag('--repeats', 5);

function record(id: number): SampleRecord {
  return { id, status: 'running', startVersion: 0, promptTokens: 100, turns: [], startedAtMs: 0 };
}

async function createRange(store: FsTrajectoryStore, from: number, count: number): Promise<void> {
  const chunk = 4096;
  for (let start = from; start < from + count; start += chunk) {
    const size = Math.min(chunk, from + count - start);
    await store.createSamples(Array.from({ length: size }, (_, i) => record(start + i)));
    if ((start - from + size) % 20_480 < chunk) process.stdout.write(`  created ${start - from + size} of ${count}\r`);
  }
  process.stdout.write('\n');
}

async function medianMs(what: () => Promise<number[]>): Promise<{ ms: number; ids: number[] }> {
  const times: number[] = [];
  let ids: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const started = performance.now();
    ids = await what();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)]!, ids };
}

async function compare(store: FsTrajectoryStore, fromId: number, label: string): Promise<void> {
  const listed = await medianMs(() => store.listSampleIds(fromId));
  const probed = await medianMs(() => store.findSampleIdsFrom(fromId));
  if (JSON.stringify(listed.ids) !== JSON.stringify(probed.ids)) {
    throw new Error(`${label}: the probe found ${probed.ids.length} ids, the listing ${listed.ids.length}`);
  }
  console.log(`| ${samples} | ${label} | ${listed.ids.length} | ${listed.ms.toFixed(2)} | ${probed.ms.toFixed(3)} | ${(listed.ms / probed.ms).toFixed(0)}× |`);
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'timeshare-bench-recovery-'));
  try {
    const store = new FsTrajectoryStore(root, 'bench', { fsync: false });
    console.log(`store recovery: ${samples} samples on record in ${root}, median of ${repeats}`);
    await createRange(store, 0, samples);
    console.log('| samples on record | left behind | ids found | listing ms | probe ms | listing / probe |');
    console.log('|---|---|---|---|---|---|');
    await compare(store, samples, 'nothing');
    await createRange(store, samples, lost);
    await compare(store, samples, `an admission of ${lost}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
