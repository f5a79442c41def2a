/** The config's security settings: file paths and variable names only, never secrets. */
import { describe, expect, it } from 'vitest';
import { expectIssues, parse, withKeys } from './helpers';

describe('temporal.tls, temporal.apiKeyEnv, temporal.codec', () => {
  it('accepts paths and variable names', () => {
    const { config } = parse(
      withKeys({
        temporal: {
          tls: { caFile: 'certs/ca.pem', certFile: 'certs/client.pem', keyFile: 'certs/client.key', serverName: 'temporal.internal' },
          apiKeyEnv: 'TEMPORAL_API_KEY',
          codec: { keyId: 'prod-2026-11', keyEnv: 'TIMESHARE_CODEC_KEY' },
        },
      }),
    );
    expect(config.temporal.tls?.certFile).toBe('certs/client.pem');
    expect(config.temporal.codec).toEqual({ keyId: 'prod-2026-11', keyEnv: 'TIMESHARE_CODEC_KEY' });
    expect(parse(withKeys({ temporal: { tls: {} } })).config.temporal.tls).toEqual({});
  });

  it('a secret written into the file is refused as an unknown key, not used', () => {
    expectIssues(withKeys({ temporal: { apiKey: 'sk-live-123' } }), [{ path: 'temporal.apiKey', message: ['unknown key'] }]);
    expectIssues(withKeys({ temporal: { codec: { keyId: 'k', key: 'ab'.repeat(32) } } }), [
      { path: 'temporal.codec.key', message: ['unknown key'] },
      { path: 'temporal.codec', message: ['expected exactly one of keyFile or keyEnv'] },
    ]);
    expectIssues(withKeys({ engine: { trainer: { kind: 'http', endpoint: 'https://t:1', apiKey: 'secret' } } }), [
      { path: 'engine.trainer.apiKey', message: ['unknown key'] },
    ]);
  });

  it('wrong types and inconsistent settings name the field', () => {
    expectIssues(withKeys({ temporal: { tls: { certFile: 'c.pem' } } }), [
      { path: 'temporal.tls.keyFile', message: ['mTLS needs both certFile and keyFile'] },
    ]);
    expectIssues(withKeys({ temporal: { tls: { caFile: 7, serverName: '' } } }), [
      { path: 'temporal.tls.caFile', message: ['expected a file path', '(got 7)'] },
      { path: 'temporal.tls.serverName', message: ['expected a host name'] },
    ]);
    expectIssues(withKeys({ temporal: { tls: true } }), [{ path: 'temporal.tls', message: ['expected an object', '(got true)'] }]);
    expectIssues(withKeys({ temporal: { apiKeyEnv: 'api key' } }), [{ path: 'temporal.apiKeyEnv', message: ['environment variable name', '(got "api key")'] }]);
    expectIssues(withKeys({ temporal: { codec: { keyId: 'bad id', keyFile: 'k', keyEnv: 'K' } } }), [
      { path: 'temporal.codec.keyId', message: ['expected a key id matching'] },
      { path: 'temporal.codec', message: ['expected exactly one of keyFile or keyEnv'] },
    ]);
  });
});
