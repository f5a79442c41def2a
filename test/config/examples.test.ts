import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfigPath, examplesDir, loadRunConfigFile, resolveRunId } from '../../src/config';
import { remainingRanks } from '../../src/gpu/layout';

const EXAMPLES = path.resolve(__dirname, '../../examples');
const file = (name: string): string => path.join(EXAMPLES, name);

describe('examples/', () => {
  it('multiplexed.yaml (the dev default): 8 ranks of 1 GPU, train group 0-3', () => {
    const { config, layout, maxConcurrentSamples } = loadRunConfigFile(file('multiplexed.yaml'));
    expect(layout.strategy).toBe('multiplexed');
    expect(layout.ranks).toHaveLength(8);
    expect(layout.trainGpus).toEqual([0, 1, 2, 3]);
    expect(layout.shrinkRanks).toEqual([0, 1, 2, 3]);
    expect(remainingRanks(layout)).toEqual([4, 5, 6, 7]);
    expect(config.batchSize).toBe(16);
    expect(config.asyncRatio).toBe(1);
    expect(config.maxTurns).toBe(12);
    expect(maxConcurrentSamples).toBe(32);
    expect(config.simulation.workload.turns).toEqual({ median: 4, p90: 9 });
    expect(config.simulation.workload.completionTokensPerTurn).toEqual({ median: 200, p90: 800 });
    expect(config.simulation.workload.envStepMs).toEqual({ median: 400, p90: 1500 });
    expect(config.simulation.timeScale).toBeGreaterThan(0);
    expect(config.engine).toEqual({ rollout: { kind: 'simulated' }, trainer: { kind: 'simulated' }, environment: { kind: 'simulated' }, weightSync: { mode: 'disk', backend: 'nccl', bucketMiB: 512, timeoutSeconds: 600, attempts: 3, fallback: 'none' } });
    expect(resolveRunId(config, file('multiplexed.yaml'))).toBe('multiplexed');
  });

  it('colocated.yaml: every GPU rolls out and trains, async 0', () => {
    const { config, layout, maxConcurrentSamples } = loadRunConfigFile(file('colocated.yaml'));
    expect(layout.strategy).toBe('colocated');
    expect(layout.ranks).toHaveLength(8);
    expect(layout.trainGpus).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(layout.shrinkRanks).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(config.asyncRatio).toBe(0);
    expect(maxConcurrentSamples).toBe(16);
  });

  it('disaggregated.yaml: GPUs 0-5 roll out, 6-7 train, nothing shrinks', () => {
    const { layout } = loadRunConfigFile(file('disaggregated.yaml'));
    expect(layout.strategy).toBe('disaggregated');
    expect(layout.ranks.map((r) => r.gpus)).toEqual([[0], [1], [2], [3], [4], [5]]);
    expect(layout.trainGpus).toEqual([6, 7]);
    expect(layout.shrinkRanks).toEqual([]);
  });

  it('seed-160.yaml: 20 nodes × 8 GPUs, ranks of 8, train = first 128 GPUs', () => {
    const { config, layout, maxConcurrentSamples } = loadRunConfigFile(file('seed-160.yaml'));
    expect(layout.nodes * layout.gpusPerNode).toBe(160);
    expect(layout.ranks).toHaveLength(20);
    expect(layout.ranks.every((r, i) => r.node === i && r.gpus.length === 8)).toBe(true);
    expect(layout.trainGpus).toEqual(Array.from({ length: 128 }, (_, i) => i));
    expect(layout.shrinkRanks).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(config).toMatchObject({ batchSize: 512, asyncRatio: 1, maxTurns: 100, maxTokens: 65536 });
    expect(maxConcurrentSamples).toBe(1024);
    // The SWE statistics defaults of the workload schema.
    expect(config.simulation.workload.turns).toEqual({ median: 36, p90: 66 });
    expect(config.simulation.workload.completionTokensPerTurn).toEqual({ median: 89, p90: 681 });
    expect(resolveRunId(config, file('seed-160.yaml'))).toBe('seed-160');
  });

  it('defaultConfigPath() finds examples/multiplexed.yaml', () => {
    expect(examplesDir()).toBe(EXAMPLES);
    expect(defaultConfigPath()).toBe(file('multiplexed.yaml'));
  });
});
