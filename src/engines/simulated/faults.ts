/**
 * Declared faults for the simulated engines: N calls of an operation fail (the first N, or those
 * after the first `after`), as an engine returning errors would. Used to prove that a failed
 * offload, train step or weight sync leaves the pool consistent (docs/design.md §3.2); the
 * fault-injection harness builds on it.
 * Counts are per worker process: a restarted worker starts counting again.
 */
import type { Fault, MemoryTag, RolloutEngine, Trainer, TrainBatch, TurnRequest } from '../types';

export type { Fault } from '../types';


export class SimulatedEngineFault extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulatedEngineFault';
  }
}

export class FaultPlan {
  private readonly remaining: number[];
  private readonly toPass: number[];
  constructor(private readonly faults: readonly Fault[]) {
    this.remaining = faults.map((fault) => fault.failures);
    this.toPass = faults.map((fault) => fault.after ?? 0);
  }

  /** Throws if a declared fault applies to this call, its calls to let pass are used up, and it has failures left. */
  check(target: Fault['target'], operation: Fault['operation'], at: number): void {
    this.faults.forEach((fault, index) => {
      if (fault.target !== target || fault.operation !== operation || (fault.at !== undefined && fault.at !== at)) return;
      if (this.toPass[index]! > 0) {
        this.toPass[index]! -= 1;
        return;
      }
      if (this.remaining[index]! <= 0) return;
      this.remaining[index]! -= 1;
      const n = fault.failures - this.remaining[index]!;
      throw new SimulatedEngineFault(`simulated fault: ${target} ${at} ${operation} failed (${n} of ${fault.failures} declared failures)`);
    });
  }
}

export function faultyRolloutEngine(engine: RolloutEngine, plan: FaultPlan, rank: number): RolloutEngine {
  return {
    generate: (request: TurnRequest, signal?: AbortSignal) => {
      plan.check('rollout', 'generate', rank);
      return engine.generate(request, signal);
    },
    abortAll: () => engine.abortAll(),
    releaseMemory: (tags: readonly MemoryTag[]) => {
      plan.check('rollout', 'releaseMemory', rank);
      return engine.releaseMemory(tags);
    },
    resumeMemory: (tags: readonly MemoryTag[]) => {
      plan.check('rollout', 'resumeMemory', rank);
      return engine.resumeMemory(tags);
    },
    updateWeights: (version: number, path: string) => {
      plan.check('rollout', 'updateWeights', rank);
      return engine.updateWeights(version, path);
    },
    status: () => engine.status(),
    kvCapacityTokens: () => engine.kvCapacityTokens(),
    ...(engine.broadcast === undefined ? {} : { broadcast: engine.broadcast }),
  };
}

export function faultyTrainer(trainer: Trainer, plan: FaultPlan, node: number): Trainer {
  return {
    onload: () => {
      plan.check('trainer', 'onload', node);
      return trainer.onload();
    },
    trainStep: (batch: TrainBatch, signal?: AbortSignal) => {
      plan.check('trainer', 'trainStep', node);
      return trainer.trainStep(batch, signal);
    },
    exportWeights: (version: number, dir: string) => {
      plan.check('trainer', 'exportWeights', node);
      return trainer.exportWeights(version, dir);
    },
    offload: () => {
      plan.check('trainer', 'offload', node);
      return trainer.offload();
    },
    status: () => trainer.status(),
    ...(trainer.broadcast === undefined ? {} : { broadcast: trainer.broadcast }),
  };
}

