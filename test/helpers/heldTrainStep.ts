/**
 * A run held at a known point for tests that drive real processes: fault injection on in its
 * config, and its first train step held (a `slow` trainer fault) until the test releases it.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseRunConfig } from '../../src/config';
import { injectFault, releaseFault } from '../../src/engines/simulated/injection';
import { faultInjectionDir, runtimePaths } from '../../src/workers/runtime';
import { smallConfig } from './pipeline';

/** A small run of two iterations with fault injection on, its store in `dir`; returns the config file. */
export function writeHoldableConfig(dir: string, runId: string): string {
  const base = smallConfig();
  const file = path.join(dir, `${runId}.json`);
  const config = {
    ...base,
    run: { id: runId, iterations: 2 },
    simulation: { ...(base.simulation as Record<string, unknown>), faultInjection: true },
    temporal: { heartbeatTimeoutSeconds: 3 },
    store: { dir: path.join(dir, 'store') },
  };
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/**
 * Holds the first train step of the run (for 10 minutes at most); resolves, once the held call has
 * started, with the release that lets it go on.
 */
export async function holdTrainStep(stateDir: string, runId: string, configFile: string): Promise<() => void> {
  const parsed = parseRunConfig(JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>, configFile);
  return holdTrainStepIn(faultInjectionDir(runtimePaths(parsed.config, stateDir), runId));
}

/** holdTrainStep, given the run's fault folder (src/engines/simulated/injection.ts). */
export async function holdTrainStepIn(faults: string): Promise<() => void> {
  injectFault(faults, { id: 'hold-train', target: 'trainer', operation: 'trainStep', kind: 'slow', durationMs: 600_000 });
  const fired = path.join(faults, 'fired', 'hold-train.json');
  const deadline = Date.now() + 240_000;
  while (!existsSync(fired)) {
    if (Date.now() > deadline) throw new Error('the train step was not reached in 240 s');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return () => releaseFault(faults, 'hold-train');
}
