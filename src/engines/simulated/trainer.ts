/**
 * A simulated trainer for the train GPUs of one node (one process of the train group).
 *
 * onload allocates trainerGiBPerGpu on each of its GPUs in the process's SimGpuMemory ledger, so
 * training on a GPU whose rollout engine still holds memory fails with SimulatedOutOfMemoryError.
 * A step takes trainStepFixedMs + totalTokens / (trainTokensPerSecondPerGpu · totalTrainGpus):
 * the batch is split across the whole train group, which steps in lockstep.
 *
 * With `statePath`, {onloaded, weightVersion, lastStep} is persisted on every change and read at
 * construction (a trainer process outliving its worker). A train step retried after it already
 * completed returns the recorded result instead of training twice.
 */
import path from 'node:path';
import { z } from 'zod';
import type { GpuId, NodeId } from '../../gpu/layout';
import { checkIntRange, checkNoDuplicates, checkNonEmpty } from '../../validation/patterns';
import type { CostModel, TrainBatch, Trainer, TrainerStatus, TrainStepResult, WeightSender } from '../types';
import { SimWeightSender } from './broadcast';
import type { SimClock } from './clock';
import { trainStepMs } from './costFunctions';
import { EngineStateError } from './errors';
import type { SimGpuMemory } from './gpuMemory';
import { readStateFile, writeJsonAtomic } from './persistentState';
import { uniform01 } from './random';
import { TransitionGate } from './transitionGate';

const lastStepSchema = z
  .object({
    iteration: z.number().int().nonnegative(),
    fromVersion: z.number().int().nonnegative(),
    newVersion: z.number().int().positive(),
    loss: z.number(),
    trainedSamples: z.number().int().nonnegative(),
  })
  .strict();

const trainerStateSchema = z
  .object({
    onloaded: z.boolean(),
    weightVersion: z.number().int().nonnegative(),
    lastStep: lastStepSchema.optional(),
  })
  .strict();
type TrainerState = z.infer<typeof trainerStateSchema>;

/** The file an exported weight version is written to (what engines' updateWeights reads). */
export function weightsFileName(version: number): string {
  return `weights-v${version}.json`;
}

export interface SimTrainerOptions {
  node: NodeId;
  /** Global ids of this node's train GPUs. */
  gpus: readonly GpuId[];
  /** Train GPUs of the whole group (all nodes): the batch is split across all of them. */
  totalTrainGpus: number;
  cost: CostModel;
  clock: SimClock;
  memory: SimGpuMemory;
  /** JSON file persisting {onloaded, weightVersion, lastStep}; omitted: nothing survives the object. */
  statePath?: string;
  /** GPUs per rollout rank (broadcast sync sends one rank's weights); default 1. */
  gpusPerRank?: number;
  /** Weight version when there is no saved state (a run resumed from a checkpoint). Default 0. */
  initialVersion?: number;
  /** Seed of the simulated loss noise. Default 1. */
  seed?: number;
}

export class SimTrainer implements Trainer {
  readonly node: NodeId;
  readonly gpus: readonly GpuId[];
  readonly totalTrainGpus: number;
  private readonly name: string;
  private readonly owner: string;
  private readonly cost: CostModel;
  private readonly clock: SimClock;
  private readonly memory: SimGpuMemory;
  private readonly statePath: string | undefined;
  private readonly seed: number;
  private readonly gate: TransitionGate;
  private state: TrainerState;

  constructor(options: SimTrainerOptions) {
    this.node = checkIntRange('trainer node', options.node, 0, Number.MAX_SAFE_INTEGER);
    checkNonEmpty(`train GPUs of node ${options.node}`, options.gpus);
    checkNoDuplicates(`train GPUs of node ${options.node}`, options.gpus);
    this.gpus = [...options.gpus];
    this.totalTrainGpus = checkIntRange('trainer totalTrainGpus', options.totalTrainGpus, this.gpus.length, Number.MAX_SAFE_INTEGER);
    this.name = `trainer node ${this.node}`;
    this.owner = this.name;
    this.cost = options.cost;
    this.clock = options.clock;
    this.memory = options.memory;
    this.statePath = options.statePath;
    this.seed = checkIntRange('trainer seed', options.seed ?? 1, 0, Number.MAX_SAFE_INTEGER);
    this.gate = new TransitionGate(this.name);
    const initialVersion = checkIntRange('trainer initialVersion', options.initialVersion ?? 0, 0, Number.MAX_SAFE_INTEGER);
    const saved = this.statePath === undefined ? undefined : readStateFile(this.statePath, trainerStateSchema, this.name);
    // A fresh trainer process keeps its parameters in host memory until onload.
    this.state = saved ?? { onloaded: false, weightVersion: initialVersion };
    if (this.state.onloaded) this.memory.adopt(this.owner, this.gpus, this.cost.trainerGiBPerGpu);
    this.persist();
    this.broadcast =
      this.statePath === undefined
        ? undefined
        : new SimWeightSender({
            name: this.name,
            dir: path.join(path.dirname(this.statePath), 'broadcast'),
            clock: this.clock,
            cost: this.cost,
            gpusPerRank: options.gpusPerRank ?? 1,
            version: () => this.state.weightVersion,
          });
  }

  /** Weight sync by broadcast (needs statePath: the group folder sits beside the state file). */
  readonly broadcast: WeightSender | undefined;

  private persist(): void {
    if (this.statePath !== undefined) writeJsonAtomic(this.statePath, this.state);
  }

  onload(): Promise<void> {
    return this.gate.run('onload', async () => {
      if (this.state.onloaded) return;
      // Allocate first: a GPU still held by a rollout engine fails now, not after the load time.
      this.memory.allocate(this.owner, this.gpus, this.cost.trainerGiBPerGpu);
      await this.clock.sleep(this.cost.trainerOnloadMs);
      this.state = { ...this.state, onloaded: true };
      this.persist();
    });
  }

  offload(): Promise<void> {
    return this.gate.run('offload', async () => {
      if (!this.state.onloaded) return;
      await this.clock.sleep(this.cost.trainerOffloadMs);
      this.memory.free(this.owner, this.gpus);
      this.state = { ...this.state, onloaded: false };
      this.persist();
    });
  }

  /** Simulated duration of a step over `totalTokens` (ms). */
  stepSimMs(totalTokens: number): number {
    return trainStepMs(this.cost, totalTokens, this.totalTrainGpus);
  }

  /** If `signal` aborts, REJECTS with SimAbortError and the weights stay at fromVersion. */
  trainStep(batch: TrainBatch, signal?: AbortSignal): Promise<TrainStepResult> {
    const method = `trainStep(iteration ${batch.iteration}, from v${batch.fromVersion})`;
    return this.gate.run(method, async () => {
      checkIntRange(`${this.name} batch iteration`, batch.iteration, 0, Number.MAX_SAFE_INTEGER);
      checkIntRange(`${this.name} batch fromVersion`, batch.fromVersion, 0, Number.MAX_SAFE_INTEGER);
      checkIntRange(`${this.name} batch totalTokens`, batch.totalTokens, 0, Number.MAX_SAFE_INTEGER);
      checkNonEmpty(`${this.name} batch sampleIds`, batch.sampleIds);
      checkNoDuplicates(`${this.name} batch sampleIds`, batch.sampleIds);
      const last = this.state.lastStep;
      if (last !== undefined && last.iteration === batch.iteration && last.fromVersion === batch.fromVersion && this.state.weightVersion === last.newVersion) {
        // A retry of a step that already completed (e.g. the worker crashed before reporting it).
        return { newVersion: last.newVersion, loss: last.loss, trainedSamples: last.trainedSamples };
      }
      if (!this.state.onloaded) throw new EngineStateError(this.name, `${method}: not onloaded (call onload first)`);
      if (batch.fromVersion !== this.state.weightVersion) {
        throw new EngineStateError(this.name, `${method}: the trainer holds v${this.state.weightVersion}, not v${batch.fromVersion}`);
      }
      await this.clock.sleep(this.stepSimMs(batch.totalTokens), signal);
      const newVersion = batch.fromVersion + 1;
      const result: TrainStepResult = { newVersion, loss: this.simulatedLoss(batch), trainedSamples: batch.sampleIds.length };
      this.state = { ...this.state, weightVersion: newVersion, lastStep: { iteration: batch.iteration, fromVersion: batch.fromVersion, ...result } };
      this.persist();
      return result;
    });
  }

  /** A plausible, slowly decreasing loss with a little seeded noise (same batch, same loss). */
  private simulatedLoss(batch: TrainBatch): number {
    const noise = (uniform01(this.seed, 'train-loss', batch.iteration, batch.fromVersion) - 0.5) * 0.04;
    return 0.3 + 0.7 * Math.exp(-(batch.fromVersion + 1) / 50) + noise;
  }

  /**
   * Writes `<dir>/weights-v<version>.json` ({version, iteration?, writtenAt}) atomically and
   * returns its absolute path. `version` must be the version the trainer holds.
   */
  exportWeights(version: number, dir: string): Promise<{ path: string }> {
    const method = `exportWeights(v${version})`;
    return this.gate.run(method, async () => {
      checkIntRange(`${this.name} exportWeights version`, version, 0, Number.MAX_SAFE_INTEGER);
      if (version !== this.state.weightVersion) {
        throw new EngineStateError(this.name, `${method}: the trainer holds v${this.state.weightVersion}`);
      }
      const file = path.resolve(dir, weightsFileName(version));
      const last = this.state.lastStep;
      const iteration = last !== undefined && last.newVersion === version ? last.iteration : undefined;
      writeJsonAtomic(file, { version, ...(iteration === undefined ? {} : { iteration }), writtenAt: new Date().toISOString() });
      return { path: file };
    });
  }

  async status(): Promise<TrainerStatus> {
    return { onloaded: this.state.onloaded, weightVersion: this.state.weightVersion };
  }
}
