/** engine.environment.kind: openenv — the example parses with its defaults, bad fields are refused by path. */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRunConfigFile } from '../../src/config';
import { configErrorOf, parse } from './helpers';

const EXAMPLE = path.resolve(__dirname, '../../examples/agentic-openenv.yaml');

function withEnvironment(environment: Record<string, unknown>): Record<string, unknown> {
  return {
    pool: { nodes: 1, gpusPerNode: 2 },
    strategy: 'multiplexed',
    train: { gpus: [0] },
    batchSize: 4,
    engine: {
      rollout: { kind: 'sglang', endpoints: ['http://127.0.0.1:1', 'http://127.0.0.1:2'] },
      trainer: { kind: 'http', endpoint: 'http://127.0.0.1:3' },
      environment,
    },
  };
}

describe('openenv environment config', () => {
  it('examples/agentic-openenv.yaml: one server, deterministic, the press tool, the engine tokenizer, defaults filled', () => {
    const { config, layout } = loadRunConfigFile(EXAMPLE);
    expect(layout.shrinkRanks).toEqual([0]);
    expect(config.engine.environment).toEqual({
      kind: 'openenv',
      servers: [{ url: 'http://127.0.0.1:30020', node: 0 }],
      sessionsPerServer: 64,
      timeouts: { connectSeconds: 10, resetSeconds: 30, stepSeconds: 120, idleSeconds: 900 },
      retries: 3,
      seed: 1,
      deterministic: true,
      toolCall: { format: 'text-argument', tool: 'press', argument: 'digit' },
      observationField: 'text',
      chatTemplate: { prompt: '{observation}', observation: '{observation}' },
      tokenizer: { kind: 'engine' },
      reward: 'sum',
    });
  });

  it('the defaults: the JSON tool-call format, the whole observation, the engine tokenizer, not deterministic', () => {
    const environment = parse(withEnvironment({ kind: 'openenv', servers: [{ url: 'http://env:8000' }] })).config.engine.environment;
    expect(environment).toMatchObject({ toolCall: { format: 'json' }, tokenizer: { kind: 'engine' }, deterministic: false, reward: 'sum' });
    expect(environment).not.toHaveProperty('observationField');
  });

  it('refuses no servers, a template without {observation}, an unknown tool-call format, a bad API key variable, a command of nothing', () => {
    const messages = (environment: Record<string, unknown>) => configErrorOf(() => parse(withEnvironment(environment))).message;
    expect(messages({ kind: 'openenv', servers: [] })).toMatch(/engine\.environment\.servers: expected at least one environment server/);
    expect(messages({ kind: 'openenv', servers: [{ url: 'http://e:1' }], chatTemplate: { observation: 'no placeholder' } })).toMatch(/each chat template must contain \{observation\}/);
    expect(messages({ kind: 'openenv', servers: [{ url: 'http://e:1' }], toolCall: { format: 'xml' } })).toMatch(/engine\.environment\.toolCall/);
    expect(messages({ kind: 'openenv', servers: [{ url: 'http://e:1' }], apiKeyEnv: 'not a name' })).toMatch(/engine\.environment\.apiKeyEnv: expected an environment variable name/);
    expect(messages({ kind: 'openenv', servers: [{ url: 'http://e:1', command: [] }] })).toMatch(/engine\.environment\.servers\[0\]\.command: expected a command/);
    expect(messages({ kind: 'openenv', servers: [{ url: 'ftp://e:1' }] })).toMatch(/engine\.environment\.servers\[0\]\.url: expected an http\(s\) URL/);
  });
});
