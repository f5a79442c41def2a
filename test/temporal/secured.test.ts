/**
 * A secured run, end to end, with the real CLI processes: client and workers reach a real
 * Temporal dev server over mTLS with an API key, payloads encrypted by the codec.
 *
 * `temporal server start-dev` (CLI 1.9.1) has no TLS options, so mTLS is terminated by a Node TLS
 * server in front of it (test/helpers/tls.ts) that requires a client certificate signed by a
 * throwaway CA; the SDK's TLS and API-key plumbing is what is under test, the server behind the
 * proxy is real. The dev server does not check API keys: the test shows the key is accepted
 * by the SDK, sent only over TLS, and never leaks.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { iterationWorkflowId, runWorkflowId } from '../../src/contract/naming';
import { AesGcmCodec, ENCRYPTED_ENCODING } from '../../src/temporal/codec';
import { startCodecServer } from '../../src/temporal/codecServer';
import { startDevServer, temporalCliPath, type DevServer } from '../../src/temporal/devServer';
import { smallConfig } from '../helpers/pipeline';
import { runCli, startCli, type Proc } from '../helpers/processes';
import { makeTlsFiles, startMtlsProxy, type MtlsProxy, type TlsFiles } from '../helpers/tls';

const API_KEY = `tsk-${randomBytes(18).toString('hex')}`;
const CODEC_KEY = randomBytes(32).toString('hex');
const OTHER_CODEC_KEY = randomBytes(32).toString('hex');
const SECRET_ENV = { TS_TEMPORAL_KEY: API_KEY, TS_CODEC_KEY: CODEC_KEY, TS_OTHER_CODEC_KEY: OTHER_CODEC_KEY };

const cli = (args: string[]) => runCli(args, { env: SECRET_ENV });

/** Every Payload object anywhere inside a history, with its path. */
function payloadsIn(value: unknown, where = '', out: Array<{ where: string; payload: Payload }> = []): Array<{ where: string; payload: Payload }> {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return out;
  const record = value as Record<string, unknown>;
  if (record.metadata !== undefined && record.data instanceof Uint8Array) {
    out.push({ where, payload: record as Payload });
    return out;
  }
  for (const [key, child] of Object.entries(record)) payloadsIn(child, `${where}.${key}`, out);
  return out;
}

/** The history as text with every byte field spelled out, for grepping. */
function historyText(value: unknown): string {
  return JSON.stringify(value, (_key, field: unknown) => (field instanceof Uint8Array ? Buffer.from(field).toString('latin1') : field));
}

describe('secured run: mTLS + API key + payload codec (real CLI, real server)', () => {
  let dir: string;
  let tls: TlsFiles;
  let server: DevServer;
  let proxy: MtlsProxy;
  let configPath: string;
  const procs: Proc[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-secured-'));
    tls = makeTlsFiles(path.join(dir, 'certs'));
    server = await startDevServer({ headless: true, logFile: path.join(dir, 'temporal.log') });
    proxy = await startMtlsProxy(tls, server.address);
    configPath = path.join(dir, 'secured.yaml');
    writeFileSync(
      configPath,
      stringify(
        smallConfig({
          run: { id: 'secured', iterations: 1 },
          store: { dir: path.join(dir, 'store') },
          temporal: {
            address: proxy.address,
            tls: { caFile: tls.caFile, certFile: tls.clientCertFile, keyFile: tls.clientKeyFile, serverName: 'localhost' },
            apiKeyEnv: 'TS_TEMPORAL_KEY',
            codec: { keyId: 'k1', keyEnv: 'TS_CODEC_KEY' },
          },
        }),
      ),
    );
  });
  afterAll(async () => {
    for (const proc of procs) proc.kill('SIGTERM');
    await Promise.all(procs.map((proc) => proc.exited));
    await proxy?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs over mTLS with ciphertext history that decodes back, and no secret anywhere', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, SECRET_ENV);
    try {
      for (const args of [
        ['worker', 'orchestrator', configPath, '--state-dir', path.join(dir, 'state')],
        ['worker', 'gpu-node', configPath, '--node', '0', '--state-dir', path.join(dir, 'state')],
      ]) {
        procs.push(startCli(args));
      }
    } finally {
      process.env = saved;
    }
    for (const proc of procs) expect(await proc.waitFor(/worker for run 'secured'/)).toMatch(/mTLS \(CA .*client certificate .*\), API key from \$TS_TEMPORAL_KEY, payloads encrypted \(AES-256-GCM, key id 'k1'/);

    const started = await cli(['start', configPath, '--watch']);
    expect(started.out).toMatch(/^run 'secured' finished: 1 iterations, weights v1, 8 samples trained/m);
    expect(started.code).toBe(0);

    const tlsFlags = ['--address', proxy.address, '--tls-ca', tls.caFile, '--tls-cert', tls.clientCertFile, '--tls-key', tls.clientKeyFile, '--tls-server-name', 'localhost', '--api-key-env', 'TS_TEMPORAL_KEY'];
    const status = await cli(['status', 'secured', ...tlsFlags, '--codec-key-id', 'k1', '--codec-key-env', 'TS_CODEC_KEY']);
    expect(status.code).toBe(0);
    expect(status.out).toMatch(/weights: +v1/);
    // The timeline of an encrypted run: its inputs are decoded with the codec before they are read.
    const timeline = await cli(['timeline', 'secured', ...tlsFlags, '--codec-key-id', 'k1', '--codec-key-env', 'TS_CODEC_KEY', '--out', path.join(dir, 'timeline')]);
    expect(timeline.code, timeline.out).toBe(0);
    const charted = JSON.parse(readFileSync(path.join(dir, 'timeline', 'secured-timeline.json'), 'utf8')) as Array<{ lanes: string[]; segments: Array<{ role: string }> }>;
    expect(charted[0]?.segments.some((segment) => segment.role === 'train')).toBe(true);
    // The wrong key: a clear error, not garbage.
    const wrongKey = await cli(['status', 'secured', ...tlsFlags, '--codec-key-id', 'k1', '--codec-key-env', 'TS_OTHER_CODEC_KEY']);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.out).toMatch(/key id 'k1'\) failed authentication: the key differs from the one it was written with/);
    // mTLS is enforced: no client certificate, no connection.
    const refusedBefore = proxy.refusedHandshakes();
    // (--server-wait 0: a refused handshake looks like an unreachable server, exit 4, at once.)
    const noCert = await cli(['status', 'secured', '--address', proxy.address, '--tls-ca', tls.caFile, '--tls-server-name', 'localhost', '--server-wait', '0']);
    expect(noCert.code).toBe(4);
    expect(noCert.out).toMatch(/cannot reach the Temporal server at .* \(TLS \(CA /);
    expect(proxy.refusedHandshakes()).toBeGreaterThan(refusedBefore);

    // The history as the server stores it (read past the proxy, without the codec).
    const connection = await Connection.connect({ address: server.address });
    const outputs = [started.out, status.out, wrongKey.out, noCert.out, ...procs.map((proc) => proc.output())];
    try {
      const raw = new Client({ connection });
      const histories = await Promise.all([runWorkflowId('secured'), iterationWorkflowId('secured', 0)].map((id) => raw.workflow.getHandle(id).fetchHistory()));
      // Search attributes stay plaintext by design (the server indexes them): only our four
      // (run id, strategy, iteration, phase). Every other payload is ciphertext.
      const all = histories.flatMap((history) => payloadsIn(history));
      const searchAttributes = all.filter(({ where }) => where.includes('.searchAttributes.indexedFields.'));
      expect(new Set(searchAttributes.map(({ where }) => where.split('.').pop()))).toEqual(
        new Set(['TimeshareRunId', 'TimeshareStrategy', 'TimeshareIteration', 'TimesharePhase']),
      );
      // Workflow code versions are Worker Deployment versions, not patches: no plaintext patch
      // marker (the SDK writes those unencoded) is left in the history.
      expect(all.filter(({ where }) => where.includes('.markerRecordedEventAttributes.details.patch-data.'))).toEqual([]);
      // The SDK's core writes a local activity's marker metadata itself, unencoded: which activity,
      // its attempt and times, never its arguments or result (those are ciphertext, checked below).
      const localActivityMarkers = all.filter(({ where }) => /\.markerRecordedEventAttributes\.details\.data\./.test(where));
      for (const { payload } of localActivityMarkers) {
        const keys = Object.keys(JSON.parse(Buffer.from(payload.data ?? []).toString()) as object);
        expect(keys.every((key) => ['seq', 'attempt', 'activity_id', 'activity_type', 'complete_time', 'original_schedule_time', 'backoff'].includes(key)), keys.join(',')).toBe(true);
      }
      const payloads = all.filter((entry) => !searchAttributes.includes(entry) && !localActivityMarkers.includes(entry)).map(({ payload }) => payload);
      expect(payloads.length).toBeGreaterThan(20);
      for (const payload of payloads) {
        expect(new TextDecoder().decode(payload.metadata?.encoding)).toBe(ENCRYPTED_ENCODING);
        const bytes = Buffer.from(payload.data ?? []).toString('latin1');
        expect(bytes).not.toContain('multiplexed');
        expect(bytes).not.toContain('json/plain');
      }
      // ... and decode back with the key.
      const started = histories[0]?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads as Payload[];
      const [input] = await new AesGcmCodec('k1', Buffer.from(CODEC_KEY, 'hex')).decode(started);
      expect(defaultPayloadConverter.fromPayload<{ spec: { runId: string; layout: { strategy: string } } }>(input as Payload).spec).toMatchObject({
        runId: 'secured',
        layout: { strategy: 'multiplexed' },
      });
      outputs.push(...histories.map((history) => historyText(history)));

      // The codec endpoint speaks the remote-codec protocol of the Temporal UI and CLI: the real
      // `temporal` CLI shows the history decoded through it.
      const endpoint = await startCodecServer({ codec: new AesGcmCodec('k1', Buffer.from(CODEC_KEY, 'hex')), corsOrigins: [] });
      try {
        const show = async (codecArgs: string[]) =>
          (await promisify(execFile)(temporalCliPath(), ['workflow', 'show', '--workflow-id', runWorkflowId('secured'), '--address', server.address, '--output', 'json', ...codecArgs])).stdout;
        type Shown = { events: Array<{ workflowExecutionStartedEventAttributes?: { input: { payloads: Array<{ metadata: { encoding: string }; data: string }> } } }> };
        const firstInput = async (codecArgs: string[]) => {
          const payload = (JSON.parse(await show(codecArgs)) as Shown).events[0]?.workflowExecutionStartedEventAttributes?.input.payloads[0];
          return { encoding: Buffer.from(payload?.metadata.encoding ?? '', 'base64').toString(), data: Buffer.from(payload?.data ?? '', 'base64').toString('latin1') };
        };
        const encrypted = await firstInput([]);
        expect(encrypted.encoding).toBe(ENCRYPTED_ENCODING);
        expect(encrypted.data).not.toContain('multiplexed');
        const decoded = await firstInput(['--codec-endpoint', endpoint.url]);
        expect(decoded.encoding).toBe('json/plain');
        expect((JSON.parse(decoded.data) as { spec: { runId: string; layout: { strategy: string } } }).spec).toMatchObject({ runId: 'secured', layout: { strategy: 'multiplexed' } });
      } finally {
        await endpoint.close();
      }
    } finally {
      await connection.close();
    }

    // No secret in the history, the CLI output, the worker logs or any file the run wrote.
    for (const file of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
      const full = path.join(dir, file);
      if (statSync(full).isFile()) outputs.push(readFileSync(full, 'latin1'));
    }
    outputs.push(readFileSync(server.logFile, 'latin1'));
    for (const secret of [API_KEY, CODEC_KEY, Buffer.from(CODEC_KEY, 'hex').toString('base64'), Buffer.from(CODEC_KEY, 'hex').toString('latin1')]) {
      for (const text of outputs) expect(text.includes(secret)).toBe(false);
    }
  });
});
