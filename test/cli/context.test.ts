/**
 * Which Temporal server and namespace a command talks to: its flags, then the config's
 * `temporal` section, then $TEMPORAL_ADDRESS / $TEMPORAL_NAMESPACE, then localhost:7233 / default
 * (README, "Every command has --help").
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { target } from '../../src/cli/context';
import { CliError } from '../../src/cli/errors';
import { EXIT } from '../../src/cli/exitCodes';
import { addressProblem } from '../../src/config/address';
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

describe('a malformed address', () => {
  it('is a usage error naming where it came from, before any connection', () => {
    vi.stubEnv('TEMPORAL_ADDRESS', '127.0.0.1:abc');
    const usage = (run: () => unknown, message: RegExp) => {
      const error = (() => {
        try {
          run();
        } catch (caught) {
          return caught;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(CliError);
      expect((error as CliError).exitCode).toBe(EXIT.usage);
      expect((error as CliError).message).toMatch(message);
    };
    usage(() => target({}, withTemporal({})), /^\$TEMPORAL_ADDRESS: expected host:port .*"127\.0\.0\.1:abc"/);
    usage(() => target({ address: '127.0.0.1:99999' }, withTemporal({})), /^--address: the port of "127\.0\.0\.1:99999" is outside 1-65535/);
    expect(() => withTemporal({ address: 'localhost' })).toThrow(/temporal\.address.*expected host:port/s);
  });

  it('host names, IPv4 and bracketed IPv6 addresses with a port pass', () => {
    for (const good of ['localhost:7233', 'temporal.example.com:443', '10.0.0.5:7233', '[::1]:7233', 'temporal-frontend:7233']) expect(addressProblem(good), good).toBeUndefined();
    for (const bad of ['localhost', ':7233', 'localhost:', 'local host:7233', 'localhost:0', 'localhost:70000', 'http://localhost:7233', '::1:7233']) expect(addressProblem(bad), bad).toBeDefined();
  });
});

describe('an unreachable server', () => {
  it("is reported without gRPC's empty resolution note, a non-empty one kept", async () => {
    const { serverUnreachable } = await import('../../src/cli/client');
    const at = { address: '127.0.0.1:1', namespace: 'default' };
    const plain = serverUnreachable(at, new Error('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: '));
    expect(plain.message).toMatch(/ECONNREFUSED 127\.0\.0\.1:1\.\n {2}Is it running\?/);
    const noted = serverUnreachable(at, new Error('14 UNAVAILABLE: x. Resolution note: check DNS'));
    expect(noted.message).toContain('Resolution note: check DNS\n');
  });
});
