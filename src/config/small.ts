/**
 * The small simulated run the tests, the chaos harness and the history-recording script share:
 * 1 node × 4 GPUs, ranks of 1 GPU, multiplexed with ranks 0 and 1 training, and a time scale that
 * makes a turn last a few ms. A raw config (before parsing); `overrides` replace top-level sections.
 */
export function smallRunConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    run: { id: 'test-run', iterations: 2 },
    pool: { nodes: 1, gpusPerNode: 4 },
    strategy: 'multiplexed',
    rollout: { gpus: 'all', gpusPerRank: 1 },
    train: { gpus: [0, 1] },
    batchSize: 8,
    asyncRatio: 1,
    maxTurns: 8,
    maxTokens: 32768,
    simulation: {
      timeScale: 0.002,
      workload: {
        turns: { median: 3, p90: 7 },
        completionTokensPerTurn: { median: 150, p90: 600 },
        envStepMs: { median: 300, p90: 1200 },
      },
    },
    ...overrides,
  };
}

/** The small run's simulation section with the engines' fault folder switched on (src/engines/simulated/injection.ts). */
export function withFaultInjection(config: Record<string, unknown>): Record<string, unknown> {
  return { ...config, simulation: { ...(config.simulation as Record<string, unknown>), faultInjection: true } };
}
