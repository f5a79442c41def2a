/**
 * Bad input to a live run, against a real Temporal dev server and the real workers:
 * - progress signals with bad payloads are ignored visibly (counted, reason in status) and the
 *   workflow carries on; updates with wrongly typed payloads are rejected by their validators;
 * - engines that answer malformed, out of range or for the wrong request fail the activity with a
 *   non-retryable EngineProtocolError naming the engine and the request; the run pauses with the
 *   reason, nothing is dropped, and once the engine behaves the run resumes and completes;
 * - a missing or corrupted sample file pauses the run with an error naming the sample and the
 *   file; the sample is not dropped, and the run completes once the file is back;
 * - poison input sent with the `temporal` CLI (payloads no converter or codec can decode, forged
 *   progress reports, updates with wrong content) never fails a workflow task: each is rejected,
 *   the reason is in status, and the run finishes.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TurnRequest, RolloutEngine, Trainer, TrainBatch } from '../../src/engines/types';
import { iterationWorkflowId, runWorkflowId } from '../../src/contract/naming';
import { AesGcmCodec } from '../../src/temporal/codec';
import { temporalCliPath } from '../../src/temporal/devServer';
import { queryRunStatus } from '../../src/temporal/runStatus';
import { PLAINTEXT } from '../../src/temporal/security';
import type { RunStatus } from '../../src/contract/types';
import { createGpuNodeWorkers, createSimulatedNodeEngines } from '../../src/workers/gpuNode';
import { createOrchestratorWorker } from '../../src/workers/orchestrator';
import { Context } from '@temporalio/activity';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { RunSummary } from '../../src/workflows/run';
import { setBatchSizeUpdate, setShrinkSetUpdate } from '../../src/workflows/signals';
import { smallConfig, startPipelineEnv, workflowBundle, type PipelineEnv } from '../helpers/pipeline';

type Mode = 'good' | 'malformed-turn' | 'wrong-request' | 'too-many-tokens' | 'trainer-bad-status' | 'trainer-wrong-version';

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
    kvCapacityTokens: () => engine.kvCapacityTokens(),
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
    async status() {
      const status = await trainer.status();
      return mode() === 'trainer-bad-status' ? ({ onloaded: 'yes', weightVersion: -1 } as unknown as typeof status) : status;
    },
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
    // Samples wait through several pauses: no environment timeout (in simulated time) meanwhile.
    const context = env.context(
      smallConfig({ run: { id: runId, iterations: 2 }, environmentTimeoutSeconds: 1e7, temporal: { activityRetry: { initialIntervalSeconds: 0.2 } } }),
    );
    // One bad behaviour per attempt of iteration 0 (each attempt is a new run of the child
    // workflow), broken from the start: attempts 1-3 fail in rollout and the run pauses; after
    // `resume`, attempts 4-6 fail in training and it pauses again; then the engines behave.
    const schedule: Mode[] = ['malformed-turn', 'wrong-request', 'too-many-tokens', 'trainer-bad-status', 'trainer-wrong-version', 'trainer-wrong-version'];
    const attempts: string[] = [];
    const mode = (): Mode => {
      const attempt = Context.current().info.workflowExecution?.runId;
      if (attempt === undefined) throw new Error('engine called outside a workflow activity');
      if (!attempts.includes(attempt)) attempts.push(attempt);
      return schedule[attempts.indexOf(attempt)] ?? 'good';
    };
    const simulated = createSimulatedNodeEngines(context, 0);
    // Every rank misbehaves, so that every attempt meets a bad answer whichever rank serves first.
    for (const [rank, engine] of simulated.engines) simulated.engines.set(rank, misbehavingEngine(engine, mode));
    simulated.trainer = misbehavingTrainer(simulated.trainer as Trainer, mode);
    const connection = await NativeConnection.connect({ address: env.server.address });
    const workers = [
      await createOrchestratorWorker(connection, context, { workflowBundle: await workflowBundle(), batchPollMs: 50 }),
      ...(await createGpuNodeWorkers(connection, context, 0, simulated)),
    ];
    const running = workers.map((worker) => worker.run());
    try {
      const { handle } = await env.startRun(context);
      const status = () => queryRunStatus(env.client, runId);

      // --- The workflows take no signal: a forged progress report sent from outside stays
      // unhandled and changes nothing (the run's status comes from the iteration's own query).
      await handle.signal('iterationProgress', null);
      await handle.signal('iterationProgress', {
        iteration: 0, phase: 'train', version: 0, samplesRunning: 0, samplesCompleted: 0, samplesWaiting: 0, batchSamples: 99,
        pool: { roles: ['training', 'training', 'training', 'training'], rankPhases: ['released', 'released', 'released', 'released'] },
      });
      const afterSignals = await status();
      expect(afterSignals.phase).not.toBe('train');
      expect(afterSignals.samples.trained).toBe(0);
      expect(afterSignals.pool?.roles ?? []).not.toContain('training');

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
      const checkPaused = (paused: RunStatus) => {
        expect(Object.values(paused.samples.dropped).every((n) => n === 0), JSON.stringify(paused.samples.dropped)).toBe(true);
        expect(paused.lastError).not.toMatch(/could not restore the pool/);
        expect(paused.iteration).toBe(0);
      };
      checkPaused(await pausedWith(/rank \d engine generated \d+ tokens for request \S+, more than maxNewTokens \d+/));
      await handle.executeUpdate('resume');
      checkPaused(await pausedWith(/trainer on node 0 answered the train step of iteration 0 \(v0 -> v1, \d+ samples\) with v2/));

      // Each attempt failed on its bad answer, non-retryably (the activity was not retried).
      const failures = await Promise.all(
        attempts.map(async (attempt) => {
          const events = (await env.client.workflow.getHandle(iterationWorkflowId(runId, 0), attempt).fetchHistory()).events ?? [];
          return events.flatMap((event) => {
            const failure = event.activityTaskFailedEventAttributes?.failure;
            return failure?.applicationFailureInfo?.type === 'EngineProtocolError' ? [failure] : [];
          });
        }),
      );
      const expected: RegExp[] = [
        /rank \d engine, turn \d+ of sample \d+ returned a malformed answer: .*outputTokens/,
        /rank \d engine answered request \S+-other to request \S+ \(sample \d+\)/,
        /rank \d engine generated \d+ tokens for request \S+, more than maxNewTokens \d+/,
        /trainer on node 0: status returned a malformed answer: .*onloaded/,
        /trainer on node 0 answered the train step of iteration 0/,
        /trainer on node 0 answered the train step of iteration 0/,
      ];
      expect(attempts).toHaveLength(expected.length);
      expected.forEach((pattern, index) => {
        const messages = (failures[index] ?? []).map((failure) => failure.message ?? '');
        expect(messages.length, `attempt ${index + 1}`).toBeGreaterThan(0);
        expect(messages.some((message) => pattern.test(message)), `attempt ${index + 1}: ${messages.join(' | ')}`).toBe(true);
        for (const failure of failures[index] ?? []) expect(failure.applicationFailureInfo?.nonRetryable).toBe(true);
      });

      // --- A missing, then a corrupt sample file: the error names the sample; it is not dropped.
      // Iteration 0 completes with good engines and the run pauses after it, carrying live
      // samples in its ledger; one of them loses its file before iteration 1 reads it.
      await handle.executeUpdate('resume');
      await handle.executeUpdate('pause');
      for (let current = await status(); !(current.paused && current.iteration === 1); current = await status()) {
        if (current.lastError !== undefined && current.paused) throw new Error(`iteration 0 failed with good engines: ${current.lastError}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const store = env.store(context);
      const samplesDir = path.dirname(store.samplePath(0));
      const victim = readdirSync(samplesDir)
        .filter((name) => /^\d+\.json$/.test(name))
        .map((name) => Number.parseInt(name, 10))
        .find((id) => {
          const record = JSON.parse(readFileSync(store.samplePath(id), 'utf8')) as { status: string; batch?: number };
          return record.status !== 'dropped' && record.batch === undefined;
        });
      if (victim === undefined) throw new Error('no live sample carried into iteration 1');
      const original = readFileSync(store.samplePath(victim), 'utf8');
      const victimPath = store.samplePath(victim).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      rmSync(store.samplePath(victim));
      await handle.executeUpdate('resume');
      const missing = await pausedWith(new RegExp(`sample ${victim} not found \\(no file ${victimPath}\\)`));
      expect(missing.iteration).toBe(1);
      expect(Object.values(missing.samples.dropped).every((n) => n === 0)).toBe(true);
      writeFileSync(store.samplePath(victim), original.slice(0, original.length / 2));
      await handle.executeUpdate('resume');
      const corrupt = await pausedWith(new RegExp(`sample ${victim} is corrupt \\(file ${victimPath}\\)`));
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

  it('poison signals sent with the temporal CLI change nothing, poison updates are refused, queries answer, and the run finishes', async () => {
    const runId = 'poison';
    const codec = new AesGcmCodec('k1', randomBytes(32));
    const base = env.context(smallConfig({ run: { id: runId, iterations: 3 } }));
    // Workers decrypt with the codec (plaintext payloads pass through it), as with temporal.codec set.
    const context = { ...base, temporal: { ...base.temporal, security: { ...PLAINTEXT, codec } } };
    const workers = await env.startWorkers(context);
    try {
      await env.startRun(context);
      const client = new Client({ connection: env.client.connection, dataConverter: { payloadCodecs: [codec] } });
      const handle = client.workflow.getHandle(runWorkflowId(runId));
      const status = () => handle.query<RunStatus>('status');
      // Hold the run at a known point: paused between two iterations.
      await handle.executeUpdate('pause');
      let held = await status();
      while (!held.paused) {
        if (held.lastError !== undefined) throw new Error(`iteration failed: ${held.lastError}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
        held = await status();
      }
      expect(held.iteration).toBeLessThan(3);

      const cli = temporalCliPath();
      const workflow = ['--address', env.server.address, '--workflow-id', runWorkflowId(runId)];
      const temporal = async (...args: string[]): Promise<{ ok: boolean; output: string }> => {
        try {
          const { stdout, stderr } = await promisify(execFile)(cli, [...args, ...workflow], { timeout: 60_000 });
          return { ok: true, output: stdout + stderr };
        } catch (error) {
          const failed = error as { stdout?: string; stderr?: string; message: string };
          return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? failed.message}` };
        }
      };
      const signal = (...args: string[]) => temporal('workflow', 'signal', '--name', 'iterationProgress', ...args);
      const base64 = (text: string) => Buffer.from(text).toString('base64');
      const encrypted = ['--input-meta', 'encoding=binary/encrypted', '--input-meta', 'encryption-cipher=AES-256-GCM'];
      const forged = (token?: string) =>
        JSON.stringify({
          iteration: held.iteration, phase: 'train', version: 7, samplesRunning: 99, samplesCompleted: 99, samplesWaiting: 0, batchSamples: 99,
          pool: { roles: ['training', 'training', 'training', 'training'], rankPhases: ['released', 'released', 'released', 'released'] },
          sequence: Number.MAX_SAFE_INTEGER,
          ...(token === undefined ? {} : { token }),
        });
      // The run takes no signal: each, decodable or not, stays unhandled and changes nothing.
      const ignoredSignals: [string, () => Promise<{ ok: boolean; output: string }>][] = [
        ['unknown encoding', () => signal('--input-meta', 'encoding=made/up', '--input', '{"a":1}')],
        // (The CLI refuses to send malformed JSON as json/plain.)
        ['raw bytes', () => signal('--input-meta', 'encoding=binary/plain', '--input-base64', '--input', base64('{"iteration": '))],
        ['another key', () => signal(...encrypted, '--input-meta', 'encryption-key-id=other', '--input-base64', '--input', base64('x'.repeat(40)))],
        ['forged ciphertext', () => signal(...encrypted, '--input-meta', 'encryption-key-id=k1', '--input-base64', '--input', base64('x'.repeat(40)))],
        ['forged progress', () => signal('--input', forged())],
        ['forged progress with a token', () => signal('--input', forged('0123'))],
      ];
      for (const [what, send] of ignoredSignals) {
        const sent = await send();
        expect(sent.ok, `${what}: ${sent.output}`).toBe(true);
        const after = await status();
        expect(after.phase, what).toBe(held.phase);
        expect(after.version, what).toBe(held.version);
        expect(after.pool, what).toEqual(held.pool);
        expect(after.samples, what).toEqual(held.samples);
      }

      // Updates with an undecodable payload or wrong content are refused; nothing changes.
      const update = (name: string, ...args: string[]) => temporal('workflow', 'update', 'execute', '--name', name, ...args);
      const refusedUpdates: [string, () => Promise<{ ok: boolean; output: string }>][] = [
        ['undecodable batch size', () => update('setBatchSize', '--input-meta', 'encoding=made/up', '--input', '{"batchSize":4}')],
        ['batch size 1e12', () => update('setBatchSize', '--input', '{"batchSize":1000000000000}')],
        ['batch size as text', () => update('setBatchSize', '--input', '{"batchSize":"4"}')],
        ['shrink set not a list', () => update('setShrinkSet', '--input', '{"ranks":"0,1"}')],
        ['returning a rank that is not lost', () => update('returnRanks', '--input', '{"ranks":[1]}')],
        ['undecodable ranks', () => update('returnRanks', ...encrypted, '--input-meta', 'encryption-key-id=k1', '--input-base64', '--input', base64('y'.repeat(40)))],
      ];
      for (const [what, send] of refusedUpdates) {
        const sent = await send();
        expect(sent.ok, `${what} was accepted: ${sent.output}`).toBe(false);
        expect(sent.output, what).not.toMatch(/deadline|timeout|unavailable/i);
      }
      // A query with an undecodable argument still answers (the status, encrypted by the codec).
      const queried = await temporal('workflow', 'query', '--name', 'status', '--input-meta', 'encoding=made/up', '--input', '{}');
      expect(queried.ok, queried.output).toBe(true);
      expect(queried.output).toMatch(/QueryResult .*"encryption-key-id":"azE="/);

      const unchanged = await status();
      expect(unchanged.batchSize).toBe(held.batchSize);
      expect(unchanged.shrinkOverride).toBeUndefined();

      // No workflow task of the run failed, and the run carries on to the end.
      await handle.executeUpdate('resume');
      const summary = (await handle.result()) as RunSummary;
      expect(summary.iterations).toBe(3);
      const events = (await handle.fetchHistory()).events ?? [];
      expect(events.filter((event) => event.workflowTaskFailedEventAttributes != null)).toEqual([]);
      const audit = await env.store(context).audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(summary.samples.trained);
    } finally {
      await workers.stop();
    }
  });
});
