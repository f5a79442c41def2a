/**
 * Bad command-line input, as a user types it (the real bin/timeshare): every case exits 2 with a
 * message naming the flag or setting, and starts nothing.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli } from '../helpers/processes';

const run = (args: string[], env: Record<string, string> = {}) => runCli(args, { env, timeoutMs: 60_000 });

describe('timeshare CLI: bad arguments', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-badargs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('each bad argument or security setting is refused with exit 2 and the reason', async () => {
    const tlsConfig = path.join(dir, 'tls.yaml');
    writeFileSync(
      tlsConfig,
      stringify({ pool: { nodes: 1, gpusPerNode: 4 }, strategy: 'multiplexed', train: { gpus: [0, 1] }, batchSize: 4, temporal: { tls: {} } }),
    );
    const stateDir = path.join(dir, 'state');
    const cases: Array<[string[], RegExp, Record<string, string>?]> = [
      [['status', 'r', '--tls-cert', 'client.pem'], /temporal.tls.keyFile: mTLS needs both certFile and keyFile/],
      [['status', 'r', '--tls-ca', path.join(dir, 'nope.pem')], /TLS CA certificate .*nope.pem: file not found/],
      [['status', 'r', '--api-key-env', 'TS_UNSET_KEY_VAR'], /environment variable TS_UNSET_KEY_VAR \(named by --api-key-env\) is not set/],
      [['status', 'r', '--codec-key-id', 'k1', '--codec-key-env', 'TS_SHORT_KEY'], /\$TS_SHORT_KEY: expected a 256-bit key/, { TS_SHORT_KEY: 'abcd' }],
      [['codec-server'], /no payload codec configured/],
      [['set-shrink-set', 'r', '1,x'], /rank id must be an integer >= 0 \(got 'x'\)/],
      [['worker', 'gpu-node', tlsConfig, '--node', 'one'], /--node must be an integer >= 0 \(got 'one'\)/],
      [['dev', tlsConfig, '--port', '0'], /--port must be an integer >= 1 \(got '0'\)/],
      [['dev', tlsConfig, '--state-dir', stateDir, '--port', '1'], /'timeshare dev' runs a local plaintext Temporal server: remove temporal.tls/],
      [['frobnicate'], /unknown command 'frobnicate'/],
    ];
    const results = await Promise.all(cases.map(([args, , env]) => run(args, env)));
    cases.forEach(([args, pattern], index) => {
      const result = results[index] as { code: number; out: string };
      expect(result.out, args.join(' ')).toMatch(pattern);
      expect(result.code, `${args.join(' ')}: ${result.out}`).toBe(2);
      expect(result.out).not.toMatch(/\n\s+at /); // a message, not a stack trace
    });
    expect(existsSync(path.join(stateDir, 'temporal.db'))).toBe(false);
  });
});
