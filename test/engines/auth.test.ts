/** Engine endpoint authentication: the header HTTP adapters send, from the variable the config names. */
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../../src/config';
import { EngineAuthError, engineAuthHeaders, headerSecrets, redactSecrets, rolloutEngineAuthHeaders, trainerEngineAuthHeaders } from '../../src/engines/auth';
import { smallConfig } from '../helpers/pipeline';

describe('engine auth headers', () => {
  const { config } = parseRunConfig(
    smallConfig({
      engine: {
        rollout: { kind: 'sglang', endpoints: ['http://a:1', 'http://b:1', 'http://c:1', 'http://d:1'], apiKeyEnv: 'SGLANG_KEY' },
        trainer: { kind: 'http', endpoint: 'https://trainer:8000', apiKeyEnv: 'TRAINER_KEY' },
        environment: { kind: 'digits' },
      },
    }),
    '<test>',
  );

  it('Authorization: Bearer <key> from the variable each engine names; none when no variable is named', () => {
    const env = { SGLANG_KEY: 'rollout-secret', TRAINER_KEY: 'trainer-secret' };
    expect(rolloutEngineAuthHeaders(config.engine.rollout, env)).toEqual({ Authorization: 'Bearer rollout-secret' });
    expect(trainerEngineAuthHeaders(config.engine.trainer, env)).toEqual({ Authorization: 'Bearer trainer-secret' });
    expect(engineAuthHeaders(undefined, 'engine.rollout', env)).toEqual({});
    expect(rolloutEngineAuthHeaders({ kind: 'simulated' }, {})).toEqual({});
  });

  it('a missing, empty or header-breaking key is an error naming the variable, never the key', () => {
    expect(() => rolloutEngineAuthHeaders(config.engine.rollout, {})).toThrow(EngineAuthError);
    expect(() => rolloutEngineAuthHeaders(config.engine.rollout, { SGLANG_KEY: '' })).toThrow(/engine.rollout.apiKeyEnv names SGLANG_KEY, which is not set/);
    const injected = 'abc\r\nX-Evil: 1';
    try {
      trainerEngineAuthHeaders(config.engine.trainer, { TRAINER_KEY: injected });
      throw new Error('expected an error');
    } catch (error) {
      expect((error as Error).message).toMatch(/engine.trainer: the API key in \$TRAINER_KEY contains whitespace or control characters/);
      expect((error as Error).message).not.toContain('abc');
    }
  });

  it('redacts the key from text an engine echoes back', () => {
    const headers = engineAuthHeaders('K', 'engine.rollout', { K: 's3cr3t' });
    expect(redactSecrets('401: bad token s3cr3t (s3cr3t)', headerSecrets(headers))).toBe('401: bad token [redacted] ([redacted])');
  });
});
