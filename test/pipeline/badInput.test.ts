/**
 * Bad input to a live run, against a real Temporal dev server and the real workers:
 * - progress signals with bad payloads are ignored visibly (counted, reason in status) and the
 *   workflow carries on; updates with wrongly typed payloads are rejected by their validators;
 * - engines that answer malformed, out of range or for the wrong request fail the activity with a
 *   non-retryable EngineProtocolError naming the engine and the request; the run pauses with the
 *   reason, nothing is dropped, and once the engine behaves the run resumes and completes;
 * - a corrupted sample file pauses the run with an error naming the sample; it is not dropped.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TurnRequest, RolloutEngine, Trainer, TrainBatch } from '../../src/engines/types';
import { iterationWorkflowId } from '../../src/pipeline/naming';
import type { RunStatus } from '../../src/pipeline/types';
import { createGpuNodeWorkers, createSimulatedNodeEngines } from '../../src/workers/gpuNode';
import { createOrchestratorWorker } from '../../src/workers/orchestrator';
import { NativeConnection } from '@temporalio/worker';
import type { RunSummary } from '../../src/workflows/run';
import { setBatchSizeUpdate, setShrinkSetUpdate } from '../../src/workflows/signals';
import { smallConfig, startPipelineEnv, workflowBundle, type PipelineEnv } from '../helpers/pipeline';

type Mode = 'good' | 'malformed-turn' | 'wrong-request' | 'too-many-tokens' | 'trainer-wrong-version';

/** A real engine behind a switch: in a bad mode it answers what a broken engine server would. */
function misbehavingEngine(engine: RolloutEngine, mode: () => Mode): RolloutEngine {
  return {
    async generate(request: TurnRequest, signal?: AbortSignal) {
      const result = await engine.generate(request, signal);
      switch (mode()) {
        case 'malformed-turn':
          return { ...result, outputTokens: -3, finishReason: 'done' } as unknown as typeof result;
        case 'wrong-request':
          return { ...result, requestId: `${request.requestId}-other` };
        case 'too-many-tokens':
          return { ...result, outputTokens: request.maxNewTokens + 1 };
        default:
          return result;
      }
    },
    abortAll: () => engine.abortAll(),
    releaseMemory: (tags) => engine.releaseMemory(tags),
    resumeMemory: (tags) => engine.resumeMemory(tags),
    updateWeights: (version, weights) => engine.updateWeights(version, weights),
    status: () => engine.status(),
  };
}

function misbehavingTrainer(trainer: Trainer, mode: () => Mode): Trainer {
  return {
    onload: () => trainer.onload(),
    async trainStep(batch: TrainBatch, signal?: AbortSignal) {
      // Answers for another step without running this one (the trainer's version stays).
      if (mode() === 'trainer-wrong-version') return { newVersion: batch.fromVersion + 2, loss: 0.5, trainedSamples: batch.sampleIds.length };
      return trainer.trainStep(batch, signal);
    },
    exportWeights: (version, dir) => trainer.exportWeights(version, dir),
    offload: () => trainer.offload(),
    status: () => trainer.status(),
  };
}

describe('pipeline: bad input (real Temporal)', () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('bad signals and updates are ignored or rejected; bad engine answers and a corrupt sample pause the run without losing a sample', async () => {
    const runId = 'bad-input';
    // Faster child retries than the default: each bad mode fails 3 iteration attempts.
    const context = env.context(smallConfig({ run: { id: runId, iterations: 2 }, temporal: { activityRetry: { initialIntervalSeconds: 0.2 } } }));
    // Broken from the start, so that every bad answer hits iteration 0.
    let mode: Mode = 'malformed-turn';
    const simulated = createSimulatedNodeEngines(context, 0);
    // Every rank misbehaves, so that every attempt meets a bad answer whichever rank serves first.
    for (const [rank, engine] of simulated.engines) simulated.engines.set(rank, misbehavingEngine(engine, () => mode));
    simulated.trainer = misbehavingTrainer(simulated.trainer as Trainer, () => mode);
    const connection = await NativeConnection.connect({ address: env.server.address });
    const workers = [
      await createOrchestratorWorker(connection, context, { workflowBundle: await workflowBundle(), batchPollMs: 50 }),
      ...(await createGpuNodeWorkers(connection, context, 0, simulated)),
    ];
    const running = workers.map((worker) => worker.run());
    try {
      const { handle } = await env.startRun(context);
      const status = () => handle.query<RunStatus>('status');

      // --- Signals cannot be rejected: a bad payload is ignored, counted and explained.
      await handle.signal('iterationProgress', null);
      await handle.signal('iterationProgress', { iteration: 'zero' });
      await handle.signal('iterationProgress', {
        iteration: 0, phase: 'train', version: 0, samplesRunning: 0, samplesCompleted: 0, samplesWaiting: 0, batchSamples: 0,
        pool: { roles: ['rollout'], rankPhases: ['serving', 'serving', 'serving', 'serving'] },
      });
      const afterSignals = await status();
      expect(afterSignals.rejectedSignals?.count).toBe(3);
      expect(afterSignals.rejectedSignals?.last).toMatch(/iterationProgress signal ignored, bad payload: pool.roles: .*4/);
      expect(afterSignals.pool?.roles ?? []).not.toEqual(['rollout']);

      // --- Updates with wrongly typed payloads: rejected by the validators, nothing changes.
      await expect(handle.executeUpdate(setBatchSizeUpdate, { args: [{ batchSize: 'four' } as unknown as { batchSize: number }] })).rejects.toThrow();
      await expect(handle.executeUpdate(setShrinkSetUpdate, { args: [{ ranks: [0, -1] }] })).rejects.toThrow();
      await expect(handle.executeUpdate(setShrinkSetUpdate, { args: [null as unknown as { ranks: null }] })).rejects.toThrow();
      expect((await status()).batchSize).toBe(afterSignals.batchSize);
      expect((await status()).shrinkOverride).toBeUndefined();

      // --- Engines answering wrongly: each pauses the run with the reason; then it is fixed.
      const pausedWith = async (pattern: RegExp): Promise<RunStatus> => {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const current = await status();
          if (current.paused && current.lastError !== undefined) {
            expect(current.lastError).toMatch(pattern);
            return current;
          }
          if (Date.now() > deadline) throw new Error(`run did not pause; status ${JSON.stringify(current)}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      };
      const cases: Array<[Mode, RegExp]> = [
        ['malformed-turn', /rank \d engine, turn \d+ of sample \d+ returned a malformed answer: .*outputTokens/],
        ['wrong-request', /rank \d engine answered request \S+-other to request \S+ \(sample \d+\)/],
        ['too-many-tokens', /rank \d engine generated \d+ tokens for request \S+, more than maxNewTokens \d+/],
        ['trainer-wrong-version', /trainer on node 0 answered the train step of iteration 0 \(v0 -> v1, \d+ samples\) with v2/],
      ];
      for (const [bad, pattern] of cases) {
        mode = bad;
        if ((await status()).paused) await handle.executeUpdate('resume');
        const paused = await pausedWith(pattern);
        expect(Object.values(paused.samples.dropped).every((n) => n === 0), `${bad}: ${JSON.stringify(paused.samples.dropped)}`).toBe(true);
        expect(paused.lastError).not.toMatch(/could not restore the pool/);
        expect(paused.iteration).toBe(0);
      }
      // Non-retryable: every EngineProtocolError failed its activity on the first attempt.
      const history = await env.client.workflow.getHandle(iterationWorkflowId(runId, 0)).fetchHistory();
      const protocolFailures = (history.events ?? []).filter(
        (event) => event.activityTaskFailedEventAttributes?.failure?.applicationFailureInfo?.type === 'EngineProtocolError',
      );
      expect(protocolFailures.length).toBeGreaterThan(0);
      for (const event of protocolFailures) {
        expect(event.activityTaskFailedEventAttributes?.failure?.applicationFailureInfo?.nonRetryable).toBe(true);
      }

      // --- A corrupt sample file: the error names the sample; it is not dropped.
      const store = env.store(context);
      const samplesDir = path.dirname(store.samplePath(0));
      // The newest sample: admitted by the last attempt, so the retry reads it back.
      const victim = Math.max(
        ...readdirSync(samplesDir)
          .filter((name) => /^\d+\.json$/.test(name))
          .map((name) => Number.parseInt(name, 10)),
      );
      const original = readFileSync(store.samplePath(victim), 'utf8');
      writeFileSync(store.samplePath(victim), original.slice(0, original.length / 2));
      mode = 'good';
      await handle.executeUpdate('resume');
      const corrupt = await pausedWith(new RegExp(`sample ${victim}\\b.*${store.samplePath(victim).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
      expect(Object.values(corrupt.samples.dropped).every((n) => n === 0)).toBe(true);

      // --- Fixed: the run resumes and completes with every sample accounted for.
      writeFileSync(store.samplePath(victim), original);
      await handle.executeUpdate('resume');
      const summary = (await handle.result()) as RunSummary;
      expect(summary.iterations).toBe(2);
      const audit = await store.audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(summary.samples.trained);
      expect((await store.readSample(victim)).id).toBe(victim);
    } finally {
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
      await Promise.allSettled(running);
      await connection.close();
    }
  });
});
