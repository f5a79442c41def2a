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

  // Files the cases name, written before they run (dir is known only then).
  const file = (name: string) => path.join(dir, name);
  beforeAll(() => {
    writeFileSync(
      file('tls.yaml'),
      stringify({ pool: { nodes: 1, gpusPerNode: 4 }, strategy: 'multiplexed', train: { gpus: [0, 1] }, batchSize: 4, temporal: { tls: {} } }),
    );
    const valid = { pool: { nodes: 1, gpusPerNode: 4 }, strategy: 'multiplexed', train: { gpus: [0, 1] }, batchSize: 4 };
    const lols = 'bcdefghi'.split('').map((name, i) => `${name}: &${name} [${Array(10).fill(`*${'abcdefghi'[i]}`).join(', ')}]`);
    writeFileSync(file('bomb.yaml'), [stringify(valid), 'a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]', ...lols].join('\n'));
    writeFileSync(file('too-many.yaml'), stringify({ ...valid, rollout: { maxConcurrentSamples: 1e12 } }));
    writeFileSync(file('My Run.yaml'), stringify(valid));
  });

  // One test per case, run one after another: each CLI start gets the whole timeout, however busy the machine.
  const cases: Array<[string[], RegExp, Record<string, string>?]> = [
    [['status', 'r', '--tls-cert', 'client.pem'], /temporal.tls.keyFile: mTLS needs both certFile and keyFile/],
    [['status', 'r', '--tls-ca', '/nonexistent/nope.pem'], /TLS CA certificate .*nope.pem: file not found/],
    [['status', 'r', '--api-key-env', 'TS_UNSET_KEY_VAR'], /environment variable TS_UNSET_KEY_VAR \(named by --api-key-env\) is not set/],
    [['status', 'r', '--codec-key-id', 'k1', '--codec-key-env', 'TS_SHORT_KEY'], /\$TS_SHORT_KEY: expected a 256-bit key/, { TS_SHORT_KEY: 'abcd' }],
    [['codec-server'], /no payload codec configured/],
    [['set-shrink-set', 'r', '1,x'], /rank ids must be a decimal integer >= 0 \(got 'x'\)/],
    [['worker', 'gpu-node', '@tls.yaml', '--node', 'one'], /--node must be a decimal integer >= 0 \(got 'one'\)/],
    [['worker', 'gpu-node', '@tls.yaml', '--node', '0', '--metrics-address', '9464'], /--metrics-address: expected host:port \(e.g. localhost:7233\), got "9464"/],
    [['dev', '@tls.yaml', '--metrics-port', '65536'], /--metrics-port must be a decimal integer in \[1, 65535\] \(got '65536'\)/],
    [['dev', '@tls.yaml', '--port', '0'], /--port must be a decimal integer in \[1, 65535\] \(got '0'\)/],
    // Decimal integers only: no exponent, hex, sign, fraction or padding read as a number.
    [['set-batch-size', 'r', '1e1'], /batch size must be a decimal integer >= 1 \(got '1e1'\)/],
    [['set-batch-size', 'r', '0x10'], /batch size must be a decimal integer >= 1 \(got '0x10'\)/],
    [['set-batch-size', 'r', '+4'], /batch size must be a decimal integer >= 1 \(got '\+4'\)/],
    [['set-batch-size', 'r', '4.0'], /batch size must be a decimal integer >= 1 \(got '4.0'\)/],
    [['set-batch-size', 'r', '99999999999999999999'], /batch size: '99999999999999999999' is too large/],
    [['dev', '@tls.yaml', '--port', '70000'], /--port must be a decimal integer in \[1, 65535\] \(got '70000'\)/],
    [['set-shrink-set', 'r', ''], /rank ids: expected a comma-separated list of integers, got an empty list/],
    [['set-shrink-set', 'r', '0,,1'], /rank ids: item 2 of '0,,1' is empty/],
    [['return-ranks', 'r', '1,1'], /rank ids: 1 listed more than once in '1,1'/],
    [['return-ranks', 'r', ' '], /rank ids: expected a comma-separated list of integers, got an empty list/],
    // Config errors found only at run time before: now refused by check-config with the field.
    [['check-config', '@bomb.yaml'], /YAML aliases expand too much/],
    [['check-config', '@too-many.yaml'], /rollout.maxConcurrentSamples: expected an integer in \[1, 1000000\] \(got 1000000000000\)/],
    [['check-config', '@My Run.yaml'], /run.id: not set, and the file name 'My Run' is not a run id/],
    [['dev', '@tls.yaml', '--state-dir', '@state', '--port', '1'], /'timeshare dev' runs a local plaintext Temporal server: remove temporal.tls/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ];
  it.each(cases.map(([args, pattern, env]) => [args.join(' '), args, pattern, env ?? {}] as const))('refuses with exit 2: %s', async (_name, args, pattern, env) => {
    // '@name' stands for a file in this test's folder.
    const result = await run(args.map((arg) => (arg.startsWith('@') ? file(arg.slice(1)) : arg)), env);
    expect(result.out, args.join(' ')).toMatch(pattern);
    expect(result.code, `${args.join(' ')}: ${result.out}`).toBe(2);
    expect(result.out).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it('started nothing', () => {
    expect(existsSync(file('state/temporal.db'))).toBe(false);
  });
});
