/**
 * Which Temporal server and namespace a command talks to: its flags, then the config's
 * `temporal` section, then $TEMPORAL_ADDRESS / $TEMPORAL_NAMESPACE, then localhost:7233 / default
 * (README, "Every command has --help").
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { target } from '../../src/cli/context';
import { parseRunConfig } from '../../src/config';

const pool = { pool: { nodes: 1, gpusPerNode: 2 }, strategy: 'multiplexed', train: { gpus: [0] }, batchSize: 4 };
const withTemporal = (temporal: Record<string, string>) => parseRunConfig({ ...pool, temporal }, '<test>');

afterEach(() => {
  vi.unstubAllEnvs();
});

describe('the connection target', () => {
  it('takes the environment where the config names no server', () => {
    vi.stubEnv('TEMPORAL_ADDRESS', 'temporal.example:7233');
    vi.stubEnv('TEMPORAL_NAMESPACE', 'rl');
    const chosen = target({}, withTemporal({}));
    expect([chosen.address, chosen.namespace]).toEqual(['temporal.example:7233', 'rl']);
  });

  it("takes the config's server over the environment, and the flags over both", () => {
    vi.stubEnv('TEMPORAL_ADDRESS', 'temporal.example:7233');
    vi.stubEnv('TEMPORAL_NAMESPACE', 'rl');
    const config = withTemporal({ address: 'config.example:7233', namespace: 'from-config' });
    const fromConfig = target({}, config);
    expect([fromConfig.address, fromConfig.namespace]).toEqual(['config.example:7233', 'from-config']);
    const fromFlags = target({ address: 'flag.example:7233', namespace: 'from-flag' }, config);
    expect([fromFlags.address, fromFlags.namespace]).toEqual(['flag.example:7233', 'from-flag']);
  });

  it('falls back to the local dev server where nothing names one', () => {
    vi.stubEnv('TEMPORAL_ADDRESS', undefined);
    vi.stubEnv('TEMPORAL_NAMESPACE', undefined);
    for (const parsed of [withTemporal({}), undefined]) {
      const chosen = target({}, parsed);
      expect([chosen.address, chosen.namespace]).toEqual(['localhost:7233', 'default']);
    }
  });
});
