import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsTrajectoryStore, type FsTrajectoryStoreOptions, type SampleRecord, type TurnRecord } from '../../src/store';

export function sample(id: number, overrides: Partial<SampleRecord> = {}): SampleRecord {
  return { id, startVersion: 0, promptTokens: 100, turns: [], status: 'running', startedAtMs: 1_000, ...overrides };
}

export function turn(index: number, overrides: Partial<TurnRecord> = {}): TurnRecord {
  return { turn: index, generatedTokens: 10, observationTokens: 5, weightVersion: 0, rank: 0, ...overrides };
}

/** Appends `n` finished turns to a record (as a shard would between checkpoints). */
export function withTurns(record: SampleRecord, n: number, rank = 0): SampleRecord {
  const turns = [...record.turns];
  for (let i = 0; i < n; i++) turns.push(turn(turns.length, { rank }));
  const { partial: _partial, ...rest } = record;
  return { ...rest, turns };
}

export interface TempStore {
  root: string;
  store: FsTrajectoryStore;
  cleanup: () => Promise<void>;
}

export async function tempStore(runId = 'run-1', options: FsTrajectoryStoreOptions = {}): Promise<TempStore> {
  const root = await mkdtemp(join(tmpdir(), 'timeshare-store-'));
  return { root, store: new FsTrajectoryStore(root, runId, options), cleanup: () => rm(root, { recursive: true, force: true }) };
}
