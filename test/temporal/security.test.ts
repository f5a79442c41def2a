/**
 * Connection security settings: flags > config > environment, zod-validated, files read and
 * checked before connecting; errors name the setting and the file, never a secret.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../../src/config';
import { resolveSecurity, SecurityConfigError, type SecurityFlags } from '../../src/temporal/security';
import { smallConfig } from '../helpers/pipeline';
import { makeTlsFiles, type TlsFiles } from '../helpers/tls';

describe('resolveSecurity', () => {
  let dir: string;
  let tls: TlsFiles;
  let other: TlsFiles;
  let keyFile: string;
  const codecKey = randomBytes(32).toString('hex');
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-security-'));
    tls = makeTlsFiles(dir, 'a');
    other = makeTlsFiles(dir, 'b');
    keyFile = path.join(dir, 'codec.key');
    writeFileSync(keyFile, codecKey);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const fails = (run: () => unknown): string => {
    try {
      run();
    } catch (error) {
      expect(error).toBeInstanceOf(SecurityConfigError);
      return (error as Error).message;
    }
    throw new Error('expected a SecurityConfigError');
  };

  it('nothing set: plaintext, no key, no codec', () => {
    const security = resolveSecurity(undefined, {}, {});
    expect(security).toMatchObject({ tls: undefined, apiKey: undefined, codec: undefined });
    expect(security.summary).toBe('plaintext, payloads unencrypted');
  });

  it('mTLS from the config, API key from the named variable, codec from a key file', () => {
    const { config } = parseRunConfig(
      smallConfig({
        temporal: {
          tls: { caFile: tls.caFile, certFile: tls.clientCertFile, keyFile: tls.clientKeyFile, serverName: 'localhost' },
          apiKeyEnv: 'MY_TEMPORAL_KEY',
          codec: { keyId: 'k1', keyFile },
        },
      }),
      '<test>',
    );
    const security = resolveSecurity(config.temporal, {}, { MY_TEMPORAL_KEY: 'secret-api-key' });
    expect(security.tls?.serverRootCACertificate?.length).toBeGreaterThan(0);
    expect(security.tls?.clientCertPair?.crt.length).toBeGreaterThan(0);
    expect(security.tls?.serverNameOverride).toBe('localhost');
    expect(security.apiKey).toBe('secret-api-key');
    expect(security.codec?.keyId).toBe('k1');
    expect(security.summary).toContain('mTLS');
    expect(security.summary).toContain('$MY_TEMPORAL_KEY');
    expect(security.summary).not.toContain('secret-api-key');
    expect(security.summary).not.toContain(codecKey);
  });

  it('flags override the config, which overrides the TEMPORAL_TLS_* variables', () => {
    const env = { TEMPORAL_TLS_CA_PATH: '/nowhere/ca.pem' };
    expect(() => resolveSecurity(undefined, {}, env)).toThrow(/TLS CA certificate \/nowhere\/ca.pem: file not found/);
    const flags: SecurityFlags = { tlsCa: other.caFile };
    expect(resolveSecurity({ tls: { caFile: '/nowhere/either.pem' } }, flags, env).summary).toContain(`CA ${other.caFile}`);
    expect(resolveSecurity({ tls: { caFile: tls.caFile } }, {}, env).summary).toContain(`CA ${tls.caFile}`);
  });

  it('an API key turns TLS on (system roots) and is never sent in plaintext', () => {
    const security = resolveSecurity(undefined, {}, { TEMPORAL_API_KEY: 'k' });
    expect(security.tls).toEqual({});
    expect(security.summary).toMatch(/^TLS \(system root CAs\), API key from \$TEMPORAL_API_KEY/);
  });

  it('bad settings: each a clear error naming the setting and the file', () => {
    expect(fails(() => resolveSecurity(undefined, { apiKeyEnv: 'UNSET_VAR' }, {}))).toMatch(/UNSET_VAR \(named by --api-key-env\) is not set/);
    expect(fails(() => resolveSecurity({ apiKeyEnv: 'UNSET_VAR' }, {}, {}))).toMatch(/named by temporal.apiKeyEnv/);
    expect(fails(() => resolveSecurity(undefined, {}, { TEMPORAL_API_KEY: 'two words' }))).toMatch(/whitespace/);
    expect(fails(() => resolveSecurity(undefined, { tlsCert: tls.clientCertFile }, {}))).toMatch(/temporal.tls.keyFile: mTLS needs both certFile and keyFile/);
    expect(fails(() => resolveSecurity(undefined, { tlsCa: dir }, {}))).toMatch(/is a directory/);
    expect(fails(() => resolveSecurity(undefined, { tlsCa: keyFile }, {}))).toMatch(/codec.key: not a PEM certificate/);
    expect(fails(() => resolveSecurity(undefined, { tlsCert: tls.clientCertFile, tlsKey: tls.clientCertFile }, {}))).toMatch(/not a PEM private key/);
    expect(fails(() => resolveSecurity(undefined, { tlsCert: tls.clientCertFile, tlsKey: other.clientKeyFile }, {}))).toMatch(
      /client certificate .*a-client.pem does not match the private key .*b-client.key/,
    );
    const dayAfterTomorrow = Date.now() + 3 * 24 * 3600 * 1000;
    expect(fails(() => resolveSecurity(undefined, { tlsCa: tls.caFile }, {}, dayAfterTomorrow))).toMatch(/a-ca.pem: expired on/);
    if (process.getuid?.() !== 0) {
      const unreadable = path.join(dir, 'unreadable.pem');
      writeFileSync(unreadable, 'x');
      chmodSync(unreadable, 0);
      expect(fails(() => resolveSecurity(undefined, { tlsCa: unreadable }, {}))).toMatch(/unreadable.pem: permission denied/);
    }
  });

  it('codec settings: flags or config, exactly one key source, key never echoed', () => {
    expect(resolveSecurity(undefined, { codecKeyId: 'k9', codecKeyEnv: 'CODEC' }, { CODEC: codecKey }).codec?.keyId).toBe('k9');
    expect(fails(() => resolveSecurity(undefined, { codecKeyFile: keyFile }, {}))).toMatch(/temporal.codec.keyId/);
    expect(fails(() => resolveSecurity({ codec: { keyId: 'k1', keyFile } }, { codecKeyEnv: 'CODEC' }, {}))).toMatch(/CODEC is not set/);
    expect(fails(() => resolveSecurity(undefined, { codecKeyId: 'k1', codecKeyFile: keyFile, codecKeyEnv: 'CODEC' }, {}))).toMatch(/exactly one of keyFile or keyEnv/);
    const badKey = 'ab'.repeat(20);
    const message = fails(() => resolveSecurity(undefined, { codecKeyId: 'k1', codecKeyEnv: 'CODEC' }, { CODEC: badKey }));
    expect(message).toMatch(/\$CODEC: expected a 256-bit key/);
    expect(message).not.toContain(badKey);
  });
});
