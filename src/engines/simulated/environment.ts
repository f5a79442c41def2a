/**
 * A simulated agent environment (tool sandbox + judge). Stateless: every answer is a function of
 * (sampleId, turn) through the WorkloadModel, so a sample migrated to another rank or process
 * continues in an environment that agrees with the one it left, with no reset needed there.
 */
import { checkIntRange } from '../../validation/patterns';
import type { AgentEnvironment, EnvironmentStep } from '../types';
import type { SimClock } from './clock';
import type { WorkloadModel } from './workload';

export interface SimEnvironmentOptions {
  workload: WorkloadModel;
  clock: SimClock;
}

export class SimEnvironment implements AgentEnvironment {
  private readonly workload: WorkloadModel;
  private readonly clock: SimClock;

  constructor(options: SimEnvironmentOptions) {
    this.workload = options.workload;
    this.clock = options.clock;
  }

  async reset(sampleId: number): Promise<{ promptTokens: number }> {
    checkIntRange('environment reset sampleId', sampleId, 0, Number.MAX_SAFE_INTEGER);
    return { promptTokens: this.workload.promptTokens(sampleId) };
  }

  /**
   * Sleeps the step's simulated latency; the trajectory is done after turnsFor(sampleId) turns.
   * Stepping a turn past the end is a caller bug and throws. If `signal` aborts, REJECTS with
   * SimAbortError (the step did not happen; repeating it later gives the same answer).
   */
  async step(sampleId: number, turn: number, generatedTokens: number, signal?: AbortSignal): Promise<EnvironmentStep> {
    checkIntRange('environment step sampleId', sampleId, 0, Number.MAX_SAFE_INTEGER);
    const turns = this.workload.turnsFor(sampleId);
    checkIntRange(`environment step turn of sample ${sampleId} (its trajectory has ${turns} turns)`, turn, 0, turns - 1);
    checkIntRange(`environment step generatedTokens of sample ${sampleId} turn ${turn}`, generatedTokens, 0, Number.MAX_SAFE_INTEGER);
    await this.clock.sleep(this.workload.envStepMs(sampleId, turn), signal);
    const observationTokens = this.workload.observationTokens(sampleId, turn);
    if (turn === turns - 1) return { observationTokens, done: true, reward: this.workload.reward(sampleId) };
    return { observationTokens, done: false };
  }
}
