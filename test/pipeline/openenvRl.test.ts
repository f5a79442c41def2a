/**
 * examples/agentic-openenv.yaml through the whole multiplexed pipeline: the vault environment on
 * OpenEnv's server (a real process, WebSocket sessions), two reference engines as rollout ranks
 * and the reference trainer, the SGLang adapter, a real Temporal dev server.
 *
 * - The ids the trainer sees are exactly the generated ids plus the tokenized observations: each
 *   turn's generated ids are what the engine generates from exactly the trajectory's prefix
 *   (checked against a greedy engine at the same weights), while a text round trip of the same
 *   turns would not give them back (EOS decodes to nothing): no re-tokenization drift.
 * - The policy learns the task: the mean reward rises.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchTrajectories } from '../../src/activities/gpuNode';
import { EngineTokenizer } from '../../src/engines/openenv';
import { startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';
import { agenticConfig, runAgentic, startAgenticProcesses, type AgenticProcesses } from '../helpers/openenvRl';

const EOS = 14;

describe('agentic RL on an OpenEnv server (real engines, real environment, real pipeline)', () => {
  let env: PipelineEnv;
  let processes: AgenticProcesses;
  beforeAll(async () => {
    [env, processes] = await Promise.all([startPipelineEnv(), startAgenticProcesses()]);
  }, 600_000);
  afterAll(async () => {
    await processes?.stop();
    await env?.close();
  });

  it('the trainer sees exactly the generated ids plus the tokenized observations (no re-tokenization drift)', { timeout: 300_000 }, async () => {
    // Greedy turns of up to 2 tokens (a digit, then usually EOS), one iteration at weights v0.
    const result = await runAgentic(env, agenticConfig(processes, { runId: 'openenv-drift', iterations: 1, batchSize: 8, maxNewTokensPerTurn: 2, temperature: 0 }));
    expect(result.summary.iterations).toBe(1);
    const batch = result.batches[0] ?? [];
    expect(batch).toHaveLength(8);
    const trajectories = batchTrajectories(batch, 0) ?? [];
    const tokenizer = new EngineTokenizer({ baseUrl: processes.trainer.url, kind: 'sglang' });
    let roundTripsThatDrift = 0;
    for (const [i, sample] of batch.entries()) {
      const trajectory = trajectories[i];
      expect(trajectory?.sampleId).toBe(sample.id);
      let offset = sample.promptIds?.length ?? 0;
      expect(trajectory?.inputIds.slice(0, offset)).toEqual(sample.promptIds);
      for (const turn of sample.turns) {
        const output = turn.outputIds ?? [];
        const observation = turn.observationIds ?? [];
        const prefix = trajectory?.inputIds.slice(0, offset) ?? [];
        // The engine, greedy at v0 (the trainer process serves /generate with version-0 weights), given
        // exactly the trainer's prefix, generates exactly the ids the trainer trains on.
        const regenerated = await fetch(`${processes.trainer.url}/generate`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ input_ids: prefix, sampling_params: { max_new_tokens: 2, temperature: 0 } }),
        }).then((r) => r.json() as Promise<{ output_ids: number[] }>);
        expect(turn.weightVersion).toBe(0);
        expect(regenerated.output_ids).toEqual(output);
        expect(trajectory?.inputIds.slice(offset, offset + output.length)).toEqual(output);
        expect(trajectory?.lossMask.slice(offset, offset + output.length)).toEqual(output.map(() => 1));
        offset += output.length;
        expect(trajectory?.inputIds.slice(offset, offset + observation.length)).toEqual(observation);
        expect(trajectory?.lossMask.slice(offset, offset + observation.length)).toEqual(observation.map(() => 0));
        offset += observation.length;
        // What a text pipeline would train on instead: the decoded turn, tokenized again.
        const retokenized = await tokenizer.encode(await tokenizer.decode(output));
        if (JSON.stringify(retokenized) !== JSON.stringify(output)) roundTripsThatDrift++;
      }
      expect(trajectory?.inputIds).toHaveLength(offset);
    }
    // The turns that ended with EOS would have drifted through text; ours did not.
    const eosTurns = batch.flatMap((s) => s.turns).filter((t) => t.outputIds?.includes(EOS)).length;
    expect(eosTurns).toBeGreaterThan(0);
    expect(roundTripsThatDrift).toBe(eosTurns);
  });
});

describe('agentic RL on an OpenEnv server: the policy learns', () => {
  let env: PipelineEnv;
  let processes: AgenticProcesses;
  beforeAll(async () => {
    [env, processes] = await Promise.all([startPipelineEnv(), startAgenticProcesses()]);
  }, 600_000);
  afterAll(async () => {
    await processes?.stop();
    await env?.close();
  });

  /**
   * As in test/pipeline/referenceRl.test.ts: a policy that does not learn presses right with
   * p ≈ 1/15 (15-token vocabulary); the mean of three iterations' 64 presses each has std ≈ 0.018,
   * the difference of two such means ≈ 0.026, so a rise of 0.12 is over 4.5 standard deviations.
   */
  it('the mean reward rises over iterations', { timeout: 900_000 }, async () => {
    const iterations = 12;
    const result = await runAgentic(env, agenticConfig(processes, { runId: 'openenv-learns', iterations }));
    console.log(`agentic OpenEnv RL: reward per iteration ${result.rewardPerIteration.map((r) => r.toFixed(3)).join(' ')} in ${result.seconds.toFixed(1)} s`);
    expect(result.summary.iterations).toBe(iterations);
    expect(result.summary.version).toBe(iterations);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(result.rewardPerIteration.slice(0, 3));
    const last = mean(result.rewardPerIteration.slice(-3));
    expect(last - first).toBeGreaterThan(0.12);
    // Every trained sample played a whole episode: 4 presses, each answered by the environment.
    for (const sample of result.batches.flat()) {
      expect(sample.turns).toHaveLength(4);
      expect(sample.turns.slice(0, -1).every((t) => (t.observationIds?.length ?? 0) === 2)).toBe(true);
    }
  });
});
