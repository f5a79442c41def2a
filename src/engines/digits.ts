/**
 * A small multi-turn environment with a verifiable reward, for real engines on token ids.
 *
 * Each turn the environment shows a digit d (one token); the agent must answer the digit
 * (d + shift) mod 10. The answer is the first token the agent generates in the turn. After
 * `turns` answers the trajectory is done with reward = fraction answered correctly.
 *
 * Token ids come from a character vocabulary shared with the model (engines/reference/configs:
 * id i is vocabulary[i]). Stateless: digits are a hash of (seed, sampleId, turn), and the reward
 * is computed from the output ids of every turn, so a sample migrated to another worker goes on
 * in an environment that agrees with the one it left.
 */
import { checkIntRange } from '../validation/patterns';
import { uniform01 } from './simulated/random';
import type { AgentEnvironment, EnvironmentReset, EnvironmentStep } from './types';

export interface DigitsEnvironmentOptions {
  vocabulary: string;
  turns: number;
  shift: number;
  seed: number;
}

export class DigitsEnvironment implements AgentEnvironment {
  private readonly digitIds: number[];

  constructor(private readonly options: DigitsEnvironmentOptions) {
    checkIntRange('digits environment turns', options.turns, 1, 1000);
    checkIntRange('digits environment shift', options.shift, 0, 9);
    const id = (char: string): number => {
      const index = options.vocabulary.indexOf(char);
      if (index < 0) throw new Error(`digits environment: the vocabulary ${JSON.stringify(options.vocabulary)} has no ${JSON.stringify(char)}`);
      return index;
    };
    this.digitIds = [...'0123456789'].map(id);
  }

  /** The digit shown at `turn` of sample `sampleId`. */
  digit(sampleId: number, turn: number): number {
    return Math.floor(uniform01(this.options.seed, 'digits', sampleId, turn) * 10);
  }

  /** The token id of the right answer at `turn`. */
  answerId(sampleId: number, turn: number): number {
    return this.digitIds[(this.digit(sampleId, turn) + this.options.shift) % 10] as number;
  }

  /** The prompt (the first question) alone, synchronously: the orchestrator admits samples with it. */
  promptIds(sampleId: number): number[] {
    checkIntRange('digits environment sampleId', sampleId, 0, Number.MAX_SAFE_INTEGER);
    return this.question(sampleId, 0);
  }

  async reset(sampleId: number): Promise<EnvironmentReset> {
    const promptIds = this.promptIds(sampleId);
    return { promptTokens: promptIds.length, promptIds };
  }

  async step(sampleId: number, turn: number, generatedTokens: number, signal?: AbortSignal, outputIds?: readonly (readonly number[])[]): Promise<EnvironmentStep> {
    checkIntRange(`digits environment turn of sample ${sampleId}`, turn, 0, this.options.turns - 1);
    signal?.throwIfAborted();
    if (outputIds?.length !== turn + 1) {
      throw new Error(`digits environment: sample ${sampleId} turn ${turn} needs the output ids of turns 0..${turn}, got ${outputIds?.length ?? 'none'}`);
    }
    const current = outputIds[turn] ?? [];
    if (current.length !== generatedTokens) {
      throw new Error(`digits environment: sample ${sampleId} turn ${turn}: ${generatedTokens} generated tokens but ${current.length} ids`);
    }
    if (turn < this.options.turns - 1) {
      const observationIds = this.question(sampleId, turn + 1);
      return { observationTokens: observationIds.length, observationIds, done: false };
    }
    const correct = outputIds.filter((ids, t) => ids[0] === this.answerId(sampleId, t)).length;
    return { observationTokens: 0, observationIds: [], done: true, reward: correct / this.options.turns };
  }

  private question(sampleId: number, turn: number): number[] {
    return [this.digitIds[this.digit(sampleId, turn)] as number];
  }
}
