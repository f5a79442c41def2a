/**
 * The SGLang and vLLM adapters and the HTTP trainer against a real reference engine process
 * (engines/reference, PyTorch on CPU): generation with ids and logprobs, abort with the partial
 * output and resume from it, memory release/resume, weight export and loading, errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineHttpError, EngineProtocolError, HttpTrainer, SglangRolloutEngine, VllmRolloutEngine } from '../../../src/engines/http';
import { startReferenceEngine, type ReferenceEngineProcess } from '../../../src/engines/reference/launch';
import type { RolloutEngine, TurnRequest } from '../../../src/engines/types';

let engine: ReferenceEngineProcess;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-adapters-'));
  engine = await startReferenceEngine({ device: 'cpu', decodeDelayMs: 5 });
});

afterAll(async () => {
  await engine?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function request(id: string, inputIds: number[], maxNewTokens: number, prefixIds: number[] = []): TurnRequest {
  return { requestId: id, sampleId: 1, turn: 0, contextTokens: inputIds.length, prefixTokens: prefixIds.length, maxNewTokens, inputIds, prefixIds };
}

const greedy = { temperature: 0, stopTokenIds: [], ignoreEos: true };
const adapterAt = (name: 'sglang' | 'vllm', baseUrl: string): RolloutEngine =>
  name === 'sglang' ? new SglangRolloutEngine({ baseUrl, sampling: greedy }) : new VllmRolloutEngine({ baseUrl, sampling: greedy, model: 'timeshare-reference' });
const adapters: ['sglang' | 'vllm', () => RolloutEngine][] = [
  ['sglang', () => adapterAt('sglang', engine.url)],
  ['vllm', () => adapterAt('vllm', engine.url)],
];

async function greedyTokens(adapter: RolloutEngine, prompt: number[], n: number, tag: string): Promise<number[]> {
  const result = await adapter.generate(request(tag, prompt, n));
  expect(result.outputIds).toHaveLength(n);
  return result.outputIds ?? [];
}

describe.each(adapters)('%s adapter against the reference engine', (name, make) => {
  it('generates token ids with logprobs and the serving weight version', async () => {
    const adapter = make();
    const result = await adapter.generate(request(`${name}-g`, [1, 10], 6));
    expect(result.requestId).toBe(`${name}-g`);
    expect(result.outputTokens).toBe(result.outputIds?.length);
    expect(result.logprobs).toHaveLength(result.outputTokens);
    expect(result.logprobs?.every((lp) => lp <= 0 && Number.isFinite(lp))).toBe(true);
    expect(result.finishReason).toBe('length');
    expect(result.outputTokens).toBe(6);
    expect(result.weightVersion).toBe(0);
  });

  it('an abort returns the partial output, and generation resumes from that prefix', async () => {
    const adapter = make();
    const prompt = [2, 10];
    const full = await greedyTokens(adapter, prompt, 60, `${name}-full`);
    const controller = new AbortController();
    // 200 tokens at 5 ms each take a second: abort after some have come out.
    const pending = adapter.generate(request(`${name}-abort`, prompt, 200), controller.signal);
    await new Promise((resolve) => setTimeout(resolve, 150));
    controller.abort();
    const partial = await pending;
    expect(partial.finishReason).toBe('abort');
    expect(partial.outputIds).toHaveLength(partial.outputTokens);
    expect(partial.logprobs).toHaveLength(partial.outputTokens);
    expect(partial.outputTokens).toBeGreaterThan(0);
    expect(partial.outputTokens).toBeLessThan(200);
    // The partial output is a prefix of the greedy sequence; resuming from it continues it exactly.
    const kept = (partial.outputIds ?? []).slice(0, 40);
    expect(kept).toEqual(full.slice(0, kept.length));
    const rest = await greedyTokens(adapter, [...prompt, ...kept], 60 - kept.length, `${name}-resume`);
    expect([...kept, ...rest]).toEqual(full);
  });

  it("reports the engine's KV capacity in tokens (the reference engine's 8 MiB pool: 8192 tokens)", async () => {
    await expect(make().kvCapacityTokens()).resolves.toBe(8192);
  });

  it('an already aborted signal returns at once with no tokens', async () => {
    const controller = new AbortController();
    controller.abort();
    const result = await make().generate(request(`${name}-pre`, [1], 5), controller.signal);
    expect(result).toMatchObject({ finishReason: 'abort', outputTokens: 0 });
  });

  it('releases and resumes memory; generating while released fails with the endpoint and status', async () => {
    const adapter = make();
    await adapter.releaseMemory(['weights', 'kv_cache']);
    expect((await adapter.status()).resident).toEqual([]);
    const failure = await adapter.generate(request(`${name}-released`, [1], 3)).catch((error: unknown) => error);
    if (name === 'sglang') {
      expect(failure).toBeInstanceOf(EngineHttpError);
      expect((failure as EngineHttpError).status).toBe(503);
      expect(String(failure)).toContain('/generate');
    } else {
      expect(failure).toBeInstanceOf(EngineHttpError);
      expect(String(failure)).toContain('/v1/completions');
    }
    await adapter.resumeMemory(['weights']);
    // Both asked for with the weights awake already (a retried resume, the pool's restore): vLLM
    // would wake nothing if asked for both; the adapter asks for the KV cache alone.
    await adapter.resumeMemory(['weights', 'kv_cache']);
    expect((await adapter.status()).resident).toEqual(['weights', 'kv_cache']);
    expect((await adapter.generate(request(`${name}-back`, [1], 2))).outputTokens).toBeGreaterThan(0);
  });
});

describe('trainer and weight sync through the adapters', () => {
  it('trains, exports under a version, and every adapter serves the new version', async () => {
    const trainer = new HttpTrainer({ baseUrl: engine.url });
    await trainer.onload();
    expect(await trainer.status()).toEqual({ onloaded: true, weightVersion: 0 });
    const trajectories = [0, 1, 2, 3].map((i) => ({ sampleId: i, reward: i % 2, inputIds: [1, 10, 3 + (i % 2)], lossMask: [0, 0, 1] as (0 | 1)[], logprobs: [0, 0, -2.4] }));
    const step = await trainer.trainStep({ iteration: 0, fromVersion: 0, sampleIds: [0, 1, 2, 3], totalTokens: 12, trajectories });
    expect(step.newVersion).toBe(1);
    expect(Number.isFinite(step.loss)).toBe(true);
    const { path: weights } = await trainer.exportWeights(1, dir);
    expect(weights).toBe(path.join(dir, 'v1'));
    await trainer.offload();
    expect(await trainer.status()).toEqual({ onloaded: false, weightVersion: 1 });

    const vllm = new VllmRolloutEngine({ baseUrl: engine.url, sampling: greedy, model: 'timeshare-reference' });
    // A vLLM server answers "default" until a version is set: its starting weights, v0.
    const weightInfo = async () => (await (await fetch(`${engine.url}/weight_info`)).json()) as { weight_version: string; prefix_cache_resets: number };
    expect((await weightInfo()).weight_version).toBe('default');
    expect((await vllm.status()).weightVersion).toBe(0);
    expect((await vllm.generate(request('before-sync', [1], 2))).weightVersion).toBe(0);

    const sglang = new SglangRolloutEngine({ baseUrl: engine.url, sampling: greedy });
    await sglang.updateWeights(1, weights);
    expect((await sglang.status()).weightVersion).toBe(1);
    expect((await sglang.generate(request('after-sync', [1], 2))).weightVersion).toBe(1);
    const resetsBefore = (await weightInfo()).prefix_cache_resets;
    await vllm.updateWeights(1, weights);
    expect((await vllm.status()).weightVersion).toBe(1);
    // vLLM keeps its prefix cache across a reload: the adapter resets it after new weights.
    expect((await weightInfo()).prefix_cache_resets).toBe(resetsBefore + 1);
  });

  it('a bad weights path and a batch without ids fail with the endpoint', async () => {
    const sglang = new SglangRolloutEngine({ baseUrl: engine.url, sampling: greedy });
    await expect(sglang.updateWeights(9, path.join(dir, 'missing'))).rejects.toThrow(/update_weights_from_disk.*HTTP 400/);
    const trainer = new HttpTrainer({ baseUrl: engine.url });
    await expect(trainer.trainStep({ iteration: 0, fromVersion: 0, sampleIds: [1], totalTokens: 3 })).rejects.toBeInstanceOf(EngineProtocolError);
  });

  it('sends the API key as a bearer token', async () => {
    const keyed = await startReferenceEngine({ device: 'cpu', apiKeyEnv: 'TS_TEST_KEY', env: { TS_TEST_KEY: 'sekret' } });
    try {
      await expect(new SglangRolloutEngine({ baseUrl: keyed.url, sampling: greedy }).status()).rejects.toThrow(/HTTP 401/);
      const status = await new SglangRolloutEngine({ baseUrl: keyed.url, apiKey: 'sekret', sampling: greedy }).status();
      expect(status.weightVersion).toBe(0);
    } finally {
      await keyed.stop();
    }
  });
});

describe('adapters and an engine they did not start with', () => {
  it('sglang: an abort that reaches the engine before its /generate registered still stops the turn', async () => {
    // The engine registers each request 300 ms after it arrives; an abort before that is ignored.
    const late = await startReferenceEngine({ device: 'cpu', decodeDelayMs: 10, registerDelayMs: 300 });
    try {
      const adapter = new SglangRolloutEngine({ baseUrl: late.url, sampling: greedy });
      const controller = new AbortController();
      // 200 tokens at 10 ms each: 2 s when nothing stops it.
      const pending = adapter.generate(request('early-abort', [1, 10], 200), controller.signal);
      await new Promise((resolve) => setTimeout(resolve, 20));
      controller.abort();
      const result = await pending;
      expect(result.finishReason).toBe('abort');
      expect(result.outputTokens).toBeLessThan(200);
    } finally {
      await late.stop();
    }
  });

  it.each(adapters)('%s: a turn served by an engine restarted behind the adapter is labelled with its base version', async (name) => {
    const first = await startReferenceEngine({ device: 'cpu' });
    let second: ReferenceEngineProcess | undefined;
    try {
      const trainer = new HttpTrainer({ baseUrl: first.url });
      await trainer.onload();
      await trainer.trainStep({
        iteration: 0,
        fromVersion: 0,
        sampleIds: [0],
        totalTokens: 3,
        trajectories: [{ sampleId: 0, reward: 1, inputIds: [1, 10, 3], lossMask: [0, 0, 1], logprobs: [0, 0, -2.4] }],
      });
      const { path: weights } = await trainer.exportWeights(1, dir);
      await trainer.offload();
      const adapter = adapterAt(name, first.url);
      await adapter.updateWeights(1, weights);
      expect((await adapter.generate(request(`${name}-before-restart`, [1], 2))).weightVersion).toBe(1);
      // The engine's process restarts on the same port; the adapter (its worker) stays up.
      const port = Number(new URL(first.url).port);
      await first.stop();
      second = await startReferenceEngine({ device: 'cpu', port });
      expect((await adapter.generate(request(`${name}-after-engine-restart`, [1], 2))).weightVersion).toBe(0);
    } finally {
      await second?.stop();
      await first.stop();
    }
  });

  it.each(adapters)('%s: a new adapter (a restarted worker) takes the weight version and the released memory from the engine', async (name, make) => {
    const trainer = new HttpTrainer({ baseUrl: engine.url });
    await trainer.onload();
    const before = await trainer.status();
    const version = before.weightVersion + 1;
    await trainer.trainStep({
      iteration: before.weightVersion,
      fromVersion: before.weightVersion,
      sampleIds: [0],
      totalTokens: 3,
      trajectories: [{ sampleId: 0, reward: 1, inputIds: [1, 10, 3], lossMask: [0, 0, 1], logprobs: [0, 0, -2.4] }],
    });
    const { path: weights } = await trainer.exportWeights(version, dir);
    await trainer.offload();
    const first = make();
    await first.updateWeights(version, weights);
    await first.releaseMemory(['weights', 'kv_cache']);
    // The worker restarts: a new adapter on the same engine, which still sleeps at `version`.
    const restarted = make();
    expect(await restarted.status()).toMatchObject({ weightVersion: version, resident: [] });
    await restarted.resumeMemory(['weights', 'kv_cache']);
    expect(await restarted.status()).toMatchObject({ weightVersion: version, resident: ['weights', 'kv_cache'] });
    const again = make();
    const turn = await again.generate(request(`${name}-after-restart`, [1], 2));
    expect(turn.weightVersion).toBe(version);
  });
});
