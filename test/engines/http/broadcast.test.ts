/**
 * Weight sync by broadcast through the HTTP adapters against real reference engine processes: a
 * trainer process and two engine processes form a gloo group; the trainer trains one step, then
 * broadcasts; one engine receives through the SGLang mapping (flattened buckets), in a second group
 * the other through the vLLM mapping (one broadcast per tensor). Each engine then generates exactly
 * what the trainer's exported weights generate once loaded from disk (greedy): the weights arrived whole.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpTrainer, SglangRolloutEngine, VllmRolloutEngine } from '../../../src/engines/http';
import { startReferenceEngine, type ReferenceEngineProcess } from '../../../src/engines/reference/launch';
import type { RolloutEngine, TrainBatch, WeightReceiver } from '../../../src/engines/types';

let processes: ReferenceEngineProcess[] = [];
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-broadcast-'));
  const started = await Promise.allSettled([0, 1, 2].map(() => startReferenceEngine({ device: 'cpu', startTimeoutMs: 300_000, weightSyncTimeoutS: 60 })));
  processes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
}, 400_000);

afterAll(async () => {
  for (const p of processes) await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

const greedy = { temperature: 0, stopTokenIds: [], ignoreEos: true };
const batch: TrainBatch = {
  iteration: 0,
  fromVersion: 0,
  sampleIds: [0, 1],
  totalTokens: 8,
  trajectories: [
    { sampleId: 0, reward: 1, inputIds: [7, 10, 0, 1], lossMask: [0, 0, 1, 1], logprobs: [0, 0, -2.4, -2.4] },
    { sampleId: 1, reward: 0, inputIds: [7, 10, 5, 6], lossMask: [0, 0, 1, 1], logprobs: [0, 0, -2.4, -2.4] },
  ],
};

async function tokens(engine: RolloutEngine, tag: string): Promise<number[]> {
  const result = await engine.generate({ requestId: tag, sampleId: 0, turn: 0, contextTokens: 2, prefixTokens: 0, maxNewTokens: 12, inputIds: [7, 10], prefixIds: [] });
  return result.outputIds ?? [];
}

describe('broadcast through the HTTP adapters (real processes, gloo)', () => {
  it('SGLang and vLLM mappings deliver the trained weights whole, at the trained version', { timeout: 300_000 }, async () => {
    const [trainerProcess, first, second] = processes as [ReferenceEngineProcess, ReferenceEngineProcess, ReferenceEngineProcess];
    const trainer = new HttpTrainer({ baseUrl: trainerProcess.url });
    await trainer.onload();
    for (let step = 0; step < 3; step++) await trainer.trainStep({ ...batch, iteration: step, fromVersion: step });
    const version = 3;
    // What the trained weights generate, loaded from their export on disk by the trainer process's own rollout side.
    const reference = new SglangRolloutEngine({ baseUrl: trainerProcess.url, sampling: greedy });
    const before = await tokens(reference, 'before');
    const exported = await trainer.exportWeights(version, dir);
    await reference.updateWeights(version, exported.path);
    const expected = await tokens(reference, 'expected');
    expect(expected).not.toEqual(before);

    const cases: [string, RolloutEngine & { broadcast: WeightReceiver }, 'flattened_bucket' | 'per_tensor'][] = [
      ['sglang', new SglangRolloutEngine({ baseUrl: first.url, sampling: greedy }), 'flattened_bucket'],
      ['vllm', new VllmRolloutEngine({ baseUrl: second.url, sampling: greedy, model: 'timeshare-reference' }), 'per_tensor'],
    ];
    for (const [name, engine, layout] of cases) {
      expect(await tokens(engine, `before-${name}`)).toEqual(before);
      // SGLang: an interrupted earlier sync left its weight update session open; this one closes it first.
      if (name === 'sglang') expect((await fetch(`${first.url}/begin_weight_update`, { method: 'POST', body: '{}' })).status).toBe(200);
      const group = await trainer.broadcast.openWeightGroup({ name: `adapters-${name}`, masterAddress: '127.0.0.1', worldSize: 2, backend: 'gloo' });
      expect(group.masterPort).toBeGreaterThan(0);
      await engine.broadcast.joinWeightGroup(group, 1);
      const manifest = await trainer.broadcast.weightManifest(16 * 1024);
      expect(manifest.buckets.length).toBeGreaterThan(1);
      const [sent] = await Promise.all([trainer.broadcast.broadcastWeights(group.name, version, 16 * 1024, layout), engine.broadcast.receiveWeights(group, version, manifest)]);
      expect(sent).toMatchObject({ bytes: manifest.totalBytes, buckets: manifest.buckets.length });
      expect((await engine.status()).weightVersion).toBe(version);
      expect(await tokens(engine, `after-${name}`)).toEqual(expected);
      // The session was closed at the end: a new one opens.
      if (name === 'sglang') {
        expect((await fetch(`${first.url}/begin_weight_update`, { method: 'POST', body: '{}' })).status).toBe(200);
        expect((await fetch(`${first.url}/end_weight_update`, { method: 'POST', body: '{}' })).status).toBe(200);
      }
      await engine.broadcast.leaveWeightGroup(group.name);
      // Left again (a retried teardown): a group the engine does not hold is left.
      await engine.broadcast.leaveWeightGroup(group.name);
      await trainer.broadcast.closeWeightGroup(group.name);
    }
    // A version the trainer does not hold is refused before anything is sent.
    await expect(trainer.broadcast.broadcastWeights('adapters-sglang', 7, 1024, 'flattened_bucket')).rejects.toThrow(/409|not open/);
  });
});

describe('SGLang weight update sessions', () => {
  it('a server without sessions (before 0.5.23: begin answers 404) gets its buckets without begin or end', async () => {
    const calls: string[] = [];
    const server = createServer((req, res) => {
      calls.push(req.url ?? '');
      req.resume();
      req.on('end', () => {
        if (req.url === '/begin_weight_update') res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"detail":"Not Found"}');
        else res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"success":true,"message":"ok"}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const engine = new SglangRolloutEngine({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sampling: greedy });
      const bucket = { names: ['w'], dtypes: ['float32'], shapes: [[2]], bytes: 8 };
      const group = { name: 'g', masterAddress: '127.0.0.1', masterPort: 1, worldSize: 2, backend: 'gloo' as const };
      await engine.broadcast.receiveWeights(group, 4, { buckets: [bucket, bucket], totalBytes: 16 });
      expect(calls).toEqual(['/begin_weight_update', '/update_weights_from_distributed', '/update_weights_from_distributed']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
