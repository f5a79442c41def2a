/**
 * The simulated engines' broadcast sync: a receive completes only once the trainer has sent that
 * version into the group the engine joined, after the modelled transfer time; an engine outside
 * the group (restarted, or never joined) fails its receive; a torn-down group fails a waiting one.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { weightBroadcastMs } from '../../src/engines/simulated/costFunctions';
import { EngineStateError } from '../../src/engines/simulated/errors';
import { SimRolloutEngine } from '../../src/engines/simulated/rolloutEngine';
import { SimTrainer } from '../../src/engines/simulated/trainer';
import type { WeightGroup } from '../../src/engines/types';
import { clock, constantWorkload, cost, memory, tempDir } from './helpers';

const TIME_SCALE = 0.001;
const COST = cost({ rolloutWeightsGiBPerGpu: 30, broadcastGiBPerSecond: 10, weightGroupSetupMs: 500 });

function members(dir: string) {
  const mem = memory();
  const engines = [0, 1].map(
    (rank) => new SimRolloutEngine({ rank, gpus: [rank + 2], cost: COST, workload: constantWorkload(10), clock: clock(TIME_SCALE), memory: mem, statePath: path.join(dir, `rank-${rank}.json`) }),
  );
  const trainer = new SimTrainer({ node: 0, gpus: [0, 1], totalTrainGpus: 2, cost: COST, clock: clock(TIME_SCALE), memory: mem, statePath: path.join(dir, 'trainer-node-0.json'), initialVersion: 3 });
  return { engines, trainer };
}

describe('simulated broadcast sync', () => {
  it('engines reach the sent version after the modelled transfer, not before', async () => {
    const { engines, trainer } = members(tempDir('sim-broadcast-'));
    const sender = trainer.broadcast!;
    const group: WeightGroup = await sender.openWeightGroup({ name: 'g1', masterAddress: '127.0.0.1', worldSize: 3, backend: 'nccl' });
    await Promise.all(engines.map((engine, i) => engine.broadcast!.joinWeightGroup(group, i + 1)));
    const manifest = await sender.weightManifest(8 * 2 ** 30);
    expect(manifest.totalBytes).toBe(30 * 2 ** 30);
    expect(manifest.buckets).toHaveLength(4);
    const receiving = engines.map((engine) => engine.broadcast!.receiveWeights(group, 3, manifest));
    // Nothing sent yet: the engines still serve v0.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await engines[0]!.status()).weightVersion).toBe(0);
    const started = performance.now();
    const sent = await sender.broadcastWeights('g1', 3, 8 * 2 ** 30, 'flattened_bucket');
    await Promise.all(receiving);
    expect(performance.now() - started).toBeGreaterThanOrEqual(weightBroadcastMs(COST, 1) * TIME_SCALE * 0.9);
    expect(sent).toMatchObject({ bytes: 30 * 2 ** 30, buckets: 4, seconds: 3 });
    for (const engine of engines) expect((await engine.status()).weightVersion).toBe(3);
  });

  it('an engine outside the group fails its receive; a torn-down group fails a waiting receive', async () => {
    const dir = tempDir('sim-broadcast-');
    const { engines, trainer } = members(dir);
    const sender = trainer.broadcast!;
    const group = await sender.openWeightGroup({ name: 'g2', masterAddress: '127.0.0.1', worldSize: 3, backend: 'nccl' });
    const manifest = await sender.weightManifest(2 ** 40);
    await expect(engines[0]!.broadcast!.receiveWeights(group, 3, manifest)).rejects.toThrow(EngineStateError);
    await engines[1]!.broadcast!.joinWeightGroup(group, 2);
    const waiting = engines[1]!.broadcast!.receiveWeights(group, 3, manifest);
    await sender.closeWeightGroup('g2');
    await expect(waiting).rejects.toThrow(/torn down/);
    expect((await engines[1]!.status()).weightVersion).toBe(0);
    await expect(sender.broadcastWeights('g2', 3, 2 ** 40, 'flattened_bucket')).rejects.toThrow(/not open/);
    // Membership survives the engine object (an engine process outliving its worker), like its version.
    const again = new SimRolloutEngine({ rank: 1, gpus: [3], cost: COST, workload: constantWorkload(10), clock: clock(TIME_SCALE), memory: memory(), statePath: path.join(dir, 'rank-1.json') });
    const g3 = await sender.openWeightGroup({ name: 'g3', masterAddress: '127.0.0.1', worldSize: 2, backend: 'nccl' });
    await again.broadcast!.joinWeightGroup(g3, 1);
    const reborn = new SimRolloutEngine({ rank: 1, gpus: [3], cost: COST, workload: constantWorkload(10), clock: clock(TIME_SCALE), memory: memory(), statePath: path.join(dir, 'rank-1.json') });
    await Promise.all([reborn.broadcast!.receiveWeights(g3, 3, manifest), sender.broadcastWeights('g3', 3, 2 ** 40, 'flattened_bucket')]);
    expect((await reborn.status()).weightVersion).toBe(3);
  });
});
