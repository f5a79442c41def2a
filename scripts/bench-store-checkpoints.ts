/**
 * What a stop's checkpoints cost the store (docs/benchmarks.md, "What a stop waits for"): a stop
 * aborts every sample of the stopped shards mid-turn and checkpoints each one (`checkpoint`: the
 * sample's lock file, a read that fences the owner, an atomic write), all at once.
 *
 *   npx tsx scripts/bench-store-checkpoints.ts [--samples 64] [--rounds 10] [--no-fsync]
 *
 * Creates and claims `--samples` records in a fresh store under the system's temp folder, then
 * checkpoints all of them concurrently `--rounds` times (each round a partial turn longer, as a
 * stop writes it) and prints each round's wall time and the process's CPU time, then their
 * medians.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { integerFlag } from '../src/cli/args';
import { median } from '../src/controlPlaneBench/report';
import { FsTrajectoryStore, type SampleRecord, type TurnRecord } from '../src/store';

const samples = integerFlag(process.argv, '--samples', 64);
const rounds = integerFlag(process.argv, '--rounds', 10);
const fsync = !process.argv.includes('--no-fsync');
const OWNER = 'shard-0@1';

const turn = (index: number): TurnRecord => ({ turn: index, generatedTokens: 100, observationTokens: 100, weightVersion: 0, rank: 0 });

function record(id: number): SampleRecord {
  return { id, status: 'running', startVersion: 0, promptTokens: 100, turns: [], startedAtMs: 0 };
}

/** The record a stop writes in `round`: two turns done, the third cut short after some tokens. */
function stopped(id: number, round: number): SampleRecord {
  return { ...record(id), owner: OWNER, turns: [turn(0), turn(1)], partial: { turn: 2, tokens: round + 1, weightVersion: 0, rank: 0 } };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'timeshare-bench-checkpoints-'));
  try {
    const store = new FsTrajectoryStore(dir, 'bench', { fsync });
    const ids = Array.from({ length: samples }, (_, i) => i);
    await store.createSamples(ids.map(record));
    await store.claim(ids, OWNER);
    console.log(`${samples} samples, ${rounds} rounds, fsync ${fsync ? 'on' : 'off'}, store ${dir}`);
    const wall: number[] = [];
    const cpu: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const started = performance.now();
      const cpuBefore = process.cpuUsage();
      await Promise.all(ids.map((id) => store.checkpoint(stopped(id, round), OWNER)));
      const used = process.cpuUsage(cpuBefore);
      wall.push(performance.now() - started);
      cpu.push((used.user + used.system) / 1000);
      console.log(`  round ${round + 1}: ${wall.at(-1)!.toFixed(1)} ms wall, ${cpu.at(-1)!.toFixed(1)} ms CPU`);
    }
    console.log(`median: ${median(wall).toFixed(1)} ms wall, ${median(cpu).toFixed(1)} ms CPU for ${samples} checkpoints`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
