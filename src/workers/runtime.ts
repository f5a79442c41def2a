/**
 * Where a run's files live on disk, resolved once from the config and the state folder:
 * the trajectory store (shared by every worker of a run), exported weights, and the simulated
 * engines' state files (one per engine, modelling engine processes that outlive their worker).
 */
import path from 'node:path';
import type { RunConfig } from '../config';
import { FsTrajectoryStore } from '../store';

export interface RuntimePaths {
  /** Root of the trajectory store; a run's data is under <storeRoot>/<runId>/. */
  storeRoot: string;
  /** Local state of this host: simulated engine state, logs, the dev server's database. */
  stateDir: string;
}

export function runtimePaths(config: RunConfig, stateDir: string, cwd = process.cwd()): RuntimePaths {
  return { storeRoot: path.resolve(cwd, config.store.dir), stateDir: path.resolve(cwd, stateDir) };
}

export const weightsDir = (paths: RuntimePaths, runId: string): string => path.join(paths.storeRoot, runId, 'weights');
export const weightsPath = (paths: RuntimePaths, runId: string, version: number): string =>
  path.join(weightsDir(paths, runId), `weights-v${version}.json`);
/** Real engines: the model directory of a version (the trainer writes model.safetensors there). */
export const modelWeightsPath = (paths: RuntimePaths, runId: string, version: number): string => path.join(weightsDir(paths, runId), `v${version}`);
export const engineStateDir = (paths: RuntimePaths, runId: string): string => path.join(paths.stateDir, 'engines', runId);

/** One store object per run id, shared by the activities of a worker process. */
export function storeCache(paths: RuntimePaths): (runId: string) => FsTrajectoryStore {
  const stores = new Map<string, FsTrajectoryStore>();
  return (runId) => {
    let store = stores.get(runId);
    if (store === undefined) {
      store = new FsTrajectoryStore(paths.storeRoot, runId);
      stores.set(runId, store);
    }
    return store;
  };
}
/** Where the fault-injection harness drops faults for a run's simulated engines (src/engines/simulated/injection.ts). */
export const faultInjectionDir = (paths: RuntimePaths, runId: string): string => path.join(engineStateDir(paths, runId), 'faults');
