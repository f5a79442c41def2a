import { describe, expect, it } from 'vitest';
import { parseGpuRanges, runConfigSchema } from '../../src/config';
import { base, expectIssues, parse, withKeys } from './helpers';

describe('engine.weightSync', () => {
  it('broadcast settings are checked, and the run spec carries them with the trainer host as the master address', async () => {
    const { parseRunConfig } = await import('../../src/config');
    const { buildRunSpec } = await import('../../src/contract/spec');
    const base = { pool: { nodes: 1, gpusPerNode: 2 }, strategy: 'multiplexed', train: { gpus: [0] }, batchSize: 4 };
    const parsed = parseRunConfig({ ...base, engine: { weightSync: { mode: 'broadcast', bucketMiB: 1, attempts: 2, fallback: 'disk' } } }, '<test>');
    expect(buildRunSpec(parsed, 'r').weightSync).toEqual({
      mode: 'broadcast', backend: 'nccl', bucketBytes: 1024 * 1024, timeoutMs: 600_000, attempts: 2, fallback: 'disk', masterAddress: '127.0.0.1', layout: 'flattened_bucket',
    });
    expect(buildRunSpec(parseRunConfig(base, '<test>'), 'r').weightSync).toBeUndefined();
    expect(() => parseRunConfig({ ...base, engine: { weightSync: { mode: 'carrier-pigeon' } } }, '<test>')).toThrow(/weightSync.mode/);
    expect(() => parseRunConfig({ ...base, engine: { weightSync: { attempts: 0 } } }, '<test>')).toThrow(/weightSync.attempts/);
  });

  it('refuses a loopback trainer host as the default master address when rollout engines run on other hosts', async () => {
    const { parseRunConfig } = await import('../../src/config');
    const config = (trainer: string, endpoints: string[], masterAddress?: string) => ({
      pool: { nodes: 1, gpusPerNode: 2 }, strategy: 'multiplexed', train: { gpus: [0] }, batchSize: 4,
      engine: {
        rollout: { kind: 'sglang', endpoints }, trainer: { kind: 'http', endpoint: trainer }, environment: { kind: 'digits' },
        weightSync: { mode: 'broadcast', ...(masterAddress === undefined ? {} : { masterAddress }) },
      },
    });
    expect(() => parseRunConfig(config('http://127.0.0.1:8000', ['http://gpu0:30000', 'http://127.0.0.1:30000']), '<test>')).toThrow(
      /engine\.weightSync\.masterAddress.*the trainer endpoint's host 127\.0\.0\.1, is loopback, but rollout engines run on gpu0/s,
    );
    expect(() => parseRunConfig(config('http://localhost:8000', ['http://gpu0:30000', 'http://gpu1:30000']), '<test>')).toThrow(/gpu0, gpu1/);
    // All on one host, a reachable trainer host, or masterAddress set: accepted.
    expect(() => parseRunConfig(config('http://127.0.0.1:8000', ['http://127.0.0.1:30001', 'http://localhost:30002']), '<test>')).not.toThrow();
    expect(() => parseRunConfig(config('http://trainer:8000', ['http://gpu0:30000', 'http://gpu1:30000']), '<test>')).not.toThrow();
    expect(() => parseRunConfig(config('http://127.0.0.1:8000', ['http://gpu0:30000', 'http://gpu1:30000'], '10.0.0.5'), '<test>')).not.toThrow();
  });
});

describe('rollout.kvCapacityTokensPerRank', () => {
  it('is optional (no KV cap), carried by the run spec when set, and must hold one trajectory at maxTokens', async () => {
    const { parseRunConfig } = await import('../../src/config');
    const { buildRunSpec } = await import('../../src/contract/spec');
    const config = { pool: { nodes: 1, gpusPerNode: 2 }, strategy: 'multiplexed', train: { gpus: [0] }, batchSize: 4, maxTokens: 1000 };
    expect(buildRunSpec(parseRunConfig(config, '<test>'), 'r').kvCapacityTokensPerRank).toBeUndefined();
    expect(buildRunSpec(parseRunConfig({ ...config, rollout: { kvCapacityTokensPerRank: 1000 } }, '<test>'), 'r').kvCapacityTokensPerRank).toBe(1000);
    expect(() => parseRunConfig({ ...config, rollout: { kvCapacityTokensPerRank: 999 } }, '<test>')).toThrow(/rollout.kvCapacityTokensPerRank.*must be >= maxTokens = 1000/s);
    expect(() => parseRunConfig({ ...config, rollout: { kvCapacityTokensPerRank: 0 } }, '<test>')).toThrow(/rollout.kvCapacityTokensPerRank/);
    expect(() => parseRunConfig({ ...config, rollout: { kvCapacityTokensPerRank: 1.5e3 + 0.5 } }, '<test>')).toThrow(/rollout.kvCapacityTokensPerRank/);
  });

  it("the simulated engines' declared capacity (simulation.costModel) holds one trajectory too, and is not set beside simulation.hardware", async () => {
    const { parseRunConfig } = await import('../../src/config');
    const config = { pool: { nodes: 1, gpusPerNode: 2 }, strategy: 'multiplexed', train: { gpus: [0] }, batchSize: 4, maxTokens: 1000 };
    expect(parseRunConfig({ ...config, simulation: { costModel: { kvCapacityTokensPerRank: 1000 } } }, '<test>').config.simulation.costModel.kvCapacityTokensPerRank).toBe(1000);
    expect(() => parseRunConfig({ ...config, simulation: { costModel: { kvCapacityTokensPerRank: 999 } } }, '<test>')).toThrow(/simulation.costModel.kvCapacityTokensPerRank.*must be >= maxTokens = 1000/s);
    const { presetPath, readRawConfig } = await import('../../src/simulator/presets');
    const hardware = (readRawConfig(presetPath('dense-8b-h100')).simulation as { hardware: unknown }).hardware;
    expect(() => parseRunConfig({ ...config, simulation: { hardware, costModel: { kvCapacityTokensPerRank: 5000 } } }, '<test>')).toThrow(/simulation.costModel.kvCapacityTokensPerRank.*derived from simulation.hardware/s);
  });
});

describe('defaults', () => {
  it('fills every optional field', () => {
    const { config, maxConcurrentSamples } = parse(base());
    expect(config.run).toEqual({ iterations: 3 });
    expect(config.rollout).toEqual({ gpus: 'all', gpusPerRank: 1, staleness: { policy: 'resume' } });
    expect(config.asyncRatio).toBe(1);
    expect(config.maxTurns).toBe(100);
    expect(config.maxTokens).toBe(65536);
    expect(config.environmentTimeoutSeconds).toBe(3600);
    expect(config.engine).toEqual({ rollout: { kind: 'simulated' }, trainer: { kind: 'simulated' }, environment: { kind: 'simulated' }, weightSync: { mode: 'disk', backend: 'nccl', bucketMiB: 512, timeoutSeconds: 600, attempts: 3, fallback: 'none' } });
    expect(config.simulation.timeScale).toBe(0.01);
    expect(config.simulation.costModel.decodeTokensPerSecondPerRank).toBe(2500);
    expect(config.simulation.costModel.offloadMs).toBe(2500);
    expect(config.simulation.workload.turns).toEqual({ median: 36, p90: 66 });
    expect(config.simulation.workload.seed).toBe(1);
    // No address or namespace: the connection's flags, then $TEMPORAL_ADDRESS / $TEMPORAL_NAMESPACE, decide (src/cli/context.ts).
    expect(config.temporal).toEqual({
      taskQueuePrefix: 'timeshare',
      heartbeatTimeoutSeconds: 15,
      lostNodeTimeoutSeconds: 300,
      activityRetry: { initialIntervalSeconds: 1, maximumAttempts: 5 },
    });
    expect(config.simulation.faults).toEqual([]);
    expect(config.simulation.faultInjection).toBe(false);
    expect(config.store).toEqual({ dir: '.timeshare/store' });
    expect(maxConcurrentSamples).toBe(32); // batchSize 16 × (1 + asyncRatio 1)
  });

  it('fills defaults inside partially given objects', () => {
    const { config } = parse(
      withKeys({
        run: { id: 'my-run' },
        simulation: { costModel: { offloadMs: 100 }, workload: { turns: { median: 3, p90: 5 } } },
        temporal: { namespace: 'rl' },
      }),
    );
    expect(config.run).toEqual({ id: 'my-run', iterations: 3 });
    expect(config.simulation.costModel.offloadMs).toBe(100);
    expect(config.simulation.costModel.onloadMs).toBe(3000);
    expect(config.simulation.workload.turns).toEqual({ median: 3, p90: 5 });
    expect(config.simulation.workload.envStepMs).toEqual({ median: 2000, p90: 8000 });
    expect(config.temporal).toEqual({
      namespace: 'rl',
      taskQueuePrefix: 'timeshare',
      heartbeatTimeoutSeconds: 15,
      lostNodeTimeoutSeconds: 300,
      activityRetry: { initialIntervalSeconds: 1, maximumAttempts: 5 },
    });
  });

  it('lostNodeTimeoutSeconds and faultInjection are validated', () => {
    expect(() => parse(withKeys({ temporal: { lostNodeTimeoutSeconds: 0 } }))).toThrow(/temporal\.lostNodeTimeoutSeconds/);
    expect(() => parse(withKeys({ simulation: { faultInjection: 'yes' } }))).toThrow(/simulation\.faultInjection/);
    expect(parse(withKeys({ temporal: { lostNodeTimeoutSeconds: 30 } })).config.temporal.lostNodeTimeoutSeconds).toBe(30);
  });

  it('maxConcurrentSamples: explicit value wins; default follows asyncRatio', () => {
    expect(parse(withKeys({ rollout: { maxConcurrentSamples: 20 } })).maxConcurrentSamples).toBe(20);
    expect(parse(withKeys({ asyncRatio: 3 })).maxConcurrentSamples).toBe(64);
  });

  it('accepts real engines with one endpoint per rank', () => {
    const { config } = parse(
      withKeys({
        rollout: { gpus: '0-7', gpusPerRank: 2 },
        train: { gpus: [0, 1] },
        engine: {
          rollout: { kind: 'sglang', endpoints: ['http://n0:30000', 'http://n0:30001', 'http://n0:30002', 'https://n0:30003'], apiKeyEnv: 'SGLANG_KEY' },
          trainer: { kind: 'http', endpoint: 'http://trainer:8000' },
          environment: { kind: 'digits' },
        },
      }),
    );
    expect(config.engine.rollout).toMatchObject({ kind: 'sglang', sampling: { temperature: 1, stopTokenIds: [], ignoreEos: false } });
    expect(config.engine.trainer).toEqual({ kind: 'http', endpoint: 'http://trainer:8000' });
    expect(config.engine.environment).toEqual({ kind: 'digits', vocabulary: '0123456789?', turns: 4, shift: 3, seed: 1 });
  });

  it('real engines go together: rollout, http trainer, an environment with ids; vllm names its model', () => {
    expectIssues(withKeys({ engine: { trainer: { kind: 'http', endpoint: 'http://t:1' } } }), [
      { path: 'engine.trainer.kind', message: ['real rollout engines need the http trainer', 'rollout simulated, trainer http'] },
    ]);
    expectIssues(withKeys({ engine: { environment: { kind: 'digits' } } }), [
      { path: 'engine.environment.kind', message: ["environment with token ids ('digits' or 'openenv')", 'rollout simulated, environment digits'] },
    ]);
    const endpoints = Array.from({ length: 8 }, (_, i) => `http://n0:${30000 + i}`);
    expectIssues(
      withKeys({ engine: { rollout: { kind: 'vllm', endpoints }, trainer: { kind: 'http', endpoint: 'http://t:1' }, environment: { kind: 'digits' } } }),
      [{ path: 'engine.rollout.model', message: ['served model name'] }],
    );
  });

  it('the schema alone accepts a JSON round trip of its own output', () => {
    const { config } = parse(base());
    expect(runConfigSchema.parse(JSON.parse(JSON.stringify(config)))).toEqual(config);
  });
});

describe('GpuList', () => {
  it.each([
    ['0-3,8,10-11', [0, 1, 2, 3, 8, 10, 11]],
    ['5', [5]],
    [' 0 - 1 , 4 ', [0, 1, 4]],
    ['3-3', [3]],
    ['8,0-1', [8, 0, 1]],
  ])('parses %j', (text, ids) => {
    expect(parseGpuRanges(text)).toEqual({ ok: true, ids });
  });

  it.each([
    ['3-1', 'start 3 > end 1'],
    ['a', 'expected N or N-M'],
    ['1,,2', 'item 2 of 3 is empty'],
    ['1,', 'item 2 of 2 is empty'],
    ['', 'expected at least one GPU'],
    ['-1', 'expected N or N-M'],
    ['1-2-3', 'expected N or N-M'],
    ['1.5', 'expected N or N-M'],
    ['0-70000', 'GPU ids must be in [0, 65535]'],
  ])('rejects %j (%s)', (text, rule) => {
    const result = parseGpuRanges(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toContain(rule);
  });

  it('resolves ranges, arrays and "all" to sorted ids', () => {
    const { layout } = parse(withKeys({ strategy: 'disaggregated', rollout: { gpus: [5, 4, 3, 2, 1, 0] }, train: { gpus: '7,6' } }));
    expect(layout.ranks.map((r) => r.gpus[0])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(layout.trainGpus).toEqual([6, 7]);
  });

  it('a malformed range string names the field and the rule', () => {
    expectIssues(withKeys({ train: { gpus: '3-1' } }), [{ path: 'train.gpus', message: ['start 3 > end 1', '(got "3-1")'] }]);
    expectIssues(withKeys({ train: { gpus: 'a' } }), [{ path: 'train.gpus', message: ['expected N or N-M', '(got "a")'] }]);
    expectIssues(withKeys({ rollout: { gpus: '1,,2' } }), [{ path: 'rollout.gpus', message: ['is empty', '(got "1,,2")'] }]);
  });

  it('a GPU listed twice is rejected', () => {
    expectIssues(withKeys({ train: { gpus: '0-3,2' } }), [{ path: 'train.gpus', message: ['GPU 2 is listed more than once'] }]);
    expectIssues(withKeys({ train: { gpus: [0, 1, 1] } }), [{ path: 'train.gpus[2]', message: ['GPU 1 is listed more than once', '(got 1)'] }]);
  });

  it('bad array elements are each reported at their index', () => {
    expectIssues(withKeys({ train: { gpus: [0, -1, 1.5, 'x'] } }), [
      { path: 'train.gpus[1]', message: ['expected a GPU id', '(got -1)'] },
      { path: 'train.gpus[2]', message: ['expected a GPU id', '(got 1.5)'] },
      { path: 'train.gpus[3]', message: ['expected a GPU id', '(got "x")'] },
    ]);
  });

  it('other forms are rejected', () => {
    expectIssues(withKeys({ train: { gpus: 3 } }), [{ path: 'train.gpus', message: ['expected "all", an array of GPU ids, or a range string', '(got 3)'] }]);
    expectIssues(withKeys({ train: { gpus: 'ALL' } }), [{ path: 'train.gpus', message: ['expected N or N-M', '(got "ALL")'] }]);
    expectIssues(withKeys({ train: { gpus: [] } }), [{ path: 'train.gpus', message: ['expected at least one GPU'] }]);
    expectIssues(withKeys({ train: { gpus: null } }), [{ path: 'train.gpus', message: ['expected "all"', '(got null)'] }]);
  });
});

describe('unknown keys', () => {
  it('at the top level', () => {
    expectIssues(withKeys({ trainBatch: 512 }), [{ path: 'trainBatch', message: ['unknown key'] }]);
  });

  it('at several depths, each listed with its full path', () => {
    const error = expectIssues(
      withKeys({
        pool: { nodes: 1, gpusPerNode: 8, gpus: 8 },
        run: { iteration: 2 },
        engine: { rollout: { kind: 'simulated', endpoints: [] }, trainer: { kind: 'http', endpoint: 'http://t:1', url: 'x' } },
        simulation: { costModel: { decodeTokensPerSecond: 1 }, workload: { turns: { median: 1, p90: 2, p99: 3 } } },
        temporal: { host: 'x' },
        store: { path: 'x' },
        rollout: { gpuPerRank: 1 },
        train: { gpus: '0-3', lr: 1e-6 },
        extra: true,
      }),
      [
        { path: 'pool.gpus', message: ['unknown key'] },
        { path: 'run.iteration', message: ['unknown key'] },
        { path: 'engine.rollout.endpoints', message: ['unknown key'] },
        { path: 'engine.trainer.url', message: ['unknown key'] },
        { path: 'simulation.costModel.decodeTokensPerSecond', message: ['unknown key'] },
        { path: 'simulation.workload.turns.p99', message: ['unknown key'] },
        { path: 'temporal.host', message: ['unknown key'] },
        { path: 'store.path', message: ['unknown key'] },
        { path: 'rollout.gpuPerRank', message: ['unknown key'] },
        { path: 'train.lr', message: ['unknown key'] },
        { path: 'extra', message: ['unknown key'] },
      ],
    );
    expect(error.issues).toHaveLength(11);
  });

  it('several unknown keys in one object are listed separately', () => {
    expectIssues(withKeys({ pool: { nodes: 1, gpusPerNode: 8, a: 1, b: 2 } }), [
      { path: 'pool.a', message: ['unknown key'] },
      { path: 'pool.b', message: ['unknown key'] },
    ]);
  });
});

describe('wrong types', () => {
  it('lists every issue with the expected type and the value', () => {
    expectIssues(
      withKeys({
        pool: { nodes: '2', gpusPerNode: 8 },
        strategy: 3,
        batchSize: 'big',
        asyncRatio: true,
        rollout: 'all',
        environmentTimeoutSeconds: '1h',
        simulation: { timeScale: null, workload: { seed: 'x' } },
        temporal: { address: 7233 },
      }),
      [
        { path: 'pool.nodes', message: ['expected an integer in [1, 4096]', '(got "2")'] },
        { path: 'strategy', message: ['expected one of "colocated" | "disaggregated" | "multiplexed"', '(got 3)'] },
        { path: 'batchSize', message: ['expected an integer in [1, 65536]', '(got "big")'] },
        { path: 'asyncRatio', message: ['expected an integer in [0, 8]', '(got true)'] },
        { path: 'rollout', message: ['expected an object', '(got "all")'] },
        { path: 'environmentTimeoutSeconds', message: ['expected a number > 0', '(got "1h")'] },
        { path: 'simulation.timeScale', message: ['expected a number in (0, 1000]', '(got null)'] },
        { path: 'simulation.workload.seed', message: ['expected a number', '(got "x")'] },
        { path: 'temporal.address', message: ['expected a host:port address', '(got 7233)'] },
      ],
    );
  });

  it('a configuration that is not a mapping', () => {
    expectIssues([1, 2], [{ path: '', message: ['expected an object', '(got [1,2])'] }]);
    expectIssues(null, [{ path: '', message: ['expected an object', '(got null)'] }]);
  });

  it('missing required fields are named', () => {
    expectIssues({ strategy: 'multiplexed' }, [
      { path: 'pool', message: ['required field is missing', 'expected an object'] },
      { path: 'train', message: ['required field is missing'] },
      { path: 'batchSize', message: ['required field is missing', 'expected an integer in [1, 65536]'] },
    ]);
    expectIssues(withKeys({ pool: { nodes: 1 } }), [{ path: 'pool.gpusPerNode', message: ['required field is missing', 'expected an integer in [1, 64]'] }]);
  });

  it('engine kinds and their fields', () => {
    expectIssues(withKeys({ engine: { rollout: { kind: 'tgi' } } }), [
      { path: 'engine.rollout.kind', message: ['expected one of "simulated" | "sglang" | "vllm"', '(got "tgi")'] },
    ]);
    expectIssues(withKeys({ engine: { trainer: {} } }), [{ path: 'engine.trainer.kind', message: ['required field is missing', '"simulated" | "http"'] }]);
    expectIssues(withKeys({ engine: { rollout: { kind: 'vllm' } } }), [
      { path: 'engine.rollout.endpoints', message: ['required field is missing', 'http(s) URLs, one per rollout rank'] },
    ]);
    expectIssues(
      withKeys({ engine: { rollout: { kind: 'vllm', endpoints: ['http://a:1', 'ftp://b', 'not a url', 'http://a:1'], apiKeyEnv: 'MY-KEY' } } }),
      [
        { path: 'engine.rollout.endpoints[1]', message: ['expected an http(s) URL', '(got "ftp://b")'] },
        { path: 'engine.rollout.endpoints[2]', message: ['expected an http(s) URL', '(got "not a url")'] },
        { path: 'engine.rollout.endpoints[3]', message: ['duplicate endpoint (same as endpoints[0])', '(got "http://a:1")'] },
        { path: 'engine.rollout.apiKeyEnv', message: ['environment variable name', '(got "MY-KEY")'] },
      ],
    );
    expectIssues(withKeys({ engine: { rollout: { kind: 'vllm', endpoints: ['http://a:1', 'http://a:1'] } } }), [
      { path: 'engine.rollout.endpoints[1]', message: ['duplicate endpoint', 'endpoints[0]'] },
    ]);
  });

  it('embedded cost model and workload rules', () => {
    expectIssues(
      withKeys({
        simulation: {
          costModel: { decodeTokensPerSecondPerRank: 0, offloadMs: -5 },
          workload: { envStepMs: { median: 500, p90: 100 }, successRate: 2 },
        },
      }),
      [
        { path: 'simulation.costModel.decodeTokensPerSecondPerRank', message: ['expected a number > 0', '(got 0)'] },
        { path: 'simulation.costModel.offloadMs', message: ['expected a number >= 0', '(got -5)'] },
        { path: 'simulation.workload.envStepMs', message: ['p90 must be >= median'] },
        { path: 'simulation.workload.successRate', message: ['expected a number <= 1', '(got 2)'] },
      ],
    );
    expectIssues(withKeys({ simulation: { workload: { turnDistribution: 'csv' } } }), [
      { path: 'simulation.workload.csvPath', message: ["csvPath is required when turnDistribution is 'csv'"] },
    ]);
  });
});

describe('out of range', () => {
  it.each([
    ['pool.nodes', { pool: { nodes: 0, gpusPerNode: 8 } }, 'expected an integer in [1, 4096]', '(got 0)'],
    ['pool.nodes', { pool: { nodes: 4097, gpusPerNode: 8 } }, 'expected an integer in [1, 4096]', '(got 4097)'],
    ['pool.gpusPerNode', { pool: { nodes: 1, gpusPerNode: 0 } }, 'expected an integer in [1, 64]', '(got 0)'],
    ['pool.gpusPerNode', { pool: { nodes: 1, gpusPerNode: 65 } }, 'expected an integer in [1, 64]', '(got 65)'],
    ['pool.gpusPerNode', { pool: { nodes: 1, gpusPerNode: 7.5 } }, 'expected an integer in [1, 64]', '(got 7.5)'],
    ['batchSize', { batchSize: 0 }, 'expected an integer in [1, 65536]', '(got 0)'],
    ['batchSize', { batchSize: 65537 }, 'expected an integer in [1, 65536]', '(got 65537)'],
    ['asyncRatio', { asyncRatio: -1 }, 'expected an integer in [0, 8]', '(got -1)'],
    ['asyncRatio', { asyncRatio: 9 }, 'expected an integer in [0, 8]', '(got 9)'],
    ['maxTurns', { maxTurns: 0 }, 'expected an integer in [1, 1000]', '(got 0)'],
    ['maxTurns', { maxTurns: 1001 }, 'expected an integer in [1, 1000]', '(got 1001)'],
    ['maxTokens', { maxTokens: 1048577 }, 'expected an integer in [1, 1048576]', '(got 1048577)'],
    ['environmentTimeoutSeconds', { environmentTimeoutSeconds: 0 }, 'expected a number > 0', '(got 0)'],
    ['run.iterations', { run: { iterations: 0 } }, 'expected an integer >= 1', '(got 0)'],
    ['run.id', { run: { id: 'My Run' } }, 'expected a slug matching', '(got "My Run")'],
    ['run.id', { run: { id: `a${'b'.repeat(63)}` } }, 'expected a slug matching', ''],
    ['rollout.gpusPerRank', { rollout: { gpusPerRank: 0 } }, 'expected an integer >= 1', '(got 0)'],
    ['rollout.maxConcurrentSamples', { rollout: { maxConcurrentSamples: 0 } }, 'expected an integer in [1, 1000000]', '(got 0)'],
    ['rollout.maxConcurrentSamples', { rollout: { maxConcurrentSamples: 1e12 } }, 'expected an integer in [1, 1000000]', '(got 1000000000000)'],
    ['simulation.timeScale', { simulation: { timeScale: 0 } }, 'expected a number in (0, 1000]', '(got 0)'],
    ['simulation.timeScale', { simulation: { timeScale: 1001 } }, 'expected a number in (0, 1000]', '(got 1001)'],
    ['temporal.taskQueuePrefix', { temporal: { taskQueuePrefix: 'a b' } }, 'expected a task queue prefix', '(got "a b")'],
    ['store.dir', { store: { dir: '' } }, 'expected a directory path', '(got "")'],
  ])('%s: %j', (fieldPath, overrides, rule, got) => {
    expectIssues(withKeys(overrides), [{ path: fieldPath, message: [rule, got] }]);
  });

  it('every issue in a file is listed, not only the first', () => {
    const error = expectIssues(withKeys({ pool: { nodes: 0, gpusPerNode: 0 }, batchSize: 0, maxTurns: 0, trainBatch: 1 }), [
      { path: 'pool.nodes', message: ['expected an integer in [1, 4096]'] },
      { path: 'pool.gpusPerNode', message: ['expected an integer in [1, 64]'] },
      { path: 'batchSize', message: ['expected an integer in [1, 65536]'] },
      { path: 'maxTurns', message: ['expected an integer in [1, 1000]'] },
      { path: 'trainBatch', message: ['unknown key'] },
    ]);
    expect(error.message).toContain('  - pool.gpusPerNode: expected an integer in [1, 64] (got 0)\n');
    expect(error.message.endsWith('  - trainBatch: unknown key')).toBe(true);
  });
});

describe('rollout.staleness', () => {
  it("defaults to 'resume', takes 'drop' and a hard token-lag limit, refuses anything else", () => {
    expect(parse(withKeys({ rollout: { staleness: { policy: 'drop', maxTokenLag: 3 } } })).config.rollout.staleness).toEqual({ policy: 'drop', maxTokenLag: 3 });
    expect(() => parse(withKeys({ rollout: { staleness: { policy: 'keep' } } }))).toThrow(/rollout\.staleness\.policy/);
    expect(() => parse(withKeys({ rollout: { staleness: { maxTokenLag: -1 } } }))).toThrow(/rollout\.staleness\.maxTokenLag/);
  });
});
