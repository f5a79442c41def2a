/** Shared set-up for the engine tests: small cost models, constant workloads, temp dirs. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { costModelSchema, workloadSchema, type CostModel } from '../../src/engines/types';
import { SimClock } from '../../src/engines/simulated/clock';
import { SimGpuMemory } from '../../src/engines/simulated/gpuMemory';
import { WorkloadModel } from '../../src/engines/simulated/workload';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
/** The real agent-trajectory statistics the repository carries (data/README.md). */
export const SWE_TRAJECTORIES_CSV = path.join(REPO_ROOT, 'data', 'swebv_mini_gemini3pro.csv');

export function cost(overrides: Partial<CostModel> = {}): CostModel {
  return costModelSchema.parse(overrides);
}

/** A workload whose turns generate exactly `tokensPerTurn` tokens (p90 = median: no spread). */
export function constantWorkload(tokensPerTurn: number, overrides: Record<string, unknown> = {}): WorkloadModel {
  const params = workloadSchema.parse({ completionTokensPerTurn: { median: tokensPerTurn, p90: tokensPerTurn }, ...overrides });
  return new WorkloadModel(params, { maxTurns: 100, maxTokens: 65_536 });
}

export function memory(gpus: number[] = [0, 1, 2, 3], capacityGiB = 80): SimGpuMemory {
  return new SimGpuMemory({ capacityGiB, gpus });
}

export function clock(timeScale: number): SimClock {
  return new SimClock({ timeScale });
}

const tempDirs: string[] = [];

/** A fresh temp dir, removed once the test file's tests have run. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `timeshare-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

export function delay(realMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, realMs));
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[index] ?? Number.NaN;
}
