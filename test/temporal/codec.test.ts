/** The AES-256-GCM payload codec and its HTTP endpoint (the one the Temporal UI calls). */
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AesGcmCodec, CodecError, ENCRYPTED_ENCODING, KEY_ID_METADATA, loadCodecKey, parseCodecKey } from '../../src/temporal/codec';
import { startCodecServer, type CodecServer } from '../../src/temporal/codecServer';

const SECRET_TEXT = 'the-plaintext-sample-body-1234';
const plain = (value: unknown): Payload => defaultPayloadConverter.toPayload(value);
const meta = (payload: Payload, key: string) => new TextDecoder().decode(payload.metadata?.[key]);

describe('AesGcmCodec', () => {
  const key = randomBytes(32);
  const codec = new AesGcmCodec('k1', key);

  it('encrypts: ciphertext only, key id and cipher in metadata; decodes back exactly', async () => {
    const payloads = [plain({ body: SECRET_TEXT, n: 7 }), plain(null), plain('x'.repeat(10_000))];
    const encoded = await codec.encode(payloads);
    expect(encoded).toHaveLength(3);
    for (const payload of encoded) {
      expect(meta(payload, 'encoding')).toBe(ENCRYPTED_ENCODING);
      expect(meta(payload, KEY_ID_METADATA)).toBe('k1');
      expect(Buffer.from(payload.data ?? []).toString('latin1')).not.toContain(SECRET_TEXT);
      expect(Buffer.from(payload.data ?? []).toString('latin1')).not.toContain('json/plain');
    }
    // A fresh IV per payload: the same plaintext never gives the same ciphertext.
    const again = await codec.encode([payloads[0] as Payload]);
    expect(Buffer.from(again[0]?.data ?? []).equals(Buffer.from(encoded[0]?.data ?? []))).toBe(false);
    // Binary framing, no base64: a large payload grows by the IV, the tag and its metadata only.
    const big = payloads[2] as Payload;
    expect((encoded[2]?.data?.length ?? 0) - (big.data?.length ?? 0)).toBeLessThan(64);
    const decoded = await codec.decode(encoded);
    expect(decoded.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual([{ body: SECRET_TEXT, n: 7 }, null, 'x'.repeat(10_000)]);
  });

  it('a wrong key, another key id, an altered payload or a swapped key id fail with a clear CodecError', async () => {
    const [encoded] = await codec.encode([plain(SECRET_TEXT)]);
    const payload = encoded as Payload;
    await expect(new AesGcmCodec('k1', randomBytes(32)).decode([payload])).rejects.toThrow(/key id 'k1'\) failed authentication: the key differs/);
    await expect(new AesGcmCodec('k2', key).decode([payload])).rejects.toThrow(/has key id 'k1', but this process holds key 'k2'/);
    const altered = Buffer.from(payload.data ?? []);
    altered[20] = (altered[20] ?? 0) ^ 1;
    await expect(codec.decode([{ ...payload, data: altered }])).rejects.toThrow(CodecError);
    const relabelled = { ...payload, metadata: { ...payload.metadata, [KEY_ID_METADATA]: new TextEncoder().encode('k2') } };
    await expect(new AesGcmCodec('k2', key).decode([relabelled])).rejects.toThrow(/failed authentication/);
    await expect(codec.decode([{ ...payload, data: new Uint8Array(5) }])).rejects.toThrow(/truncated/);
    // Authentic ciphertext of a broken framing (written by a buggy encoder) is named as such.
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(new TextEncoder().encode('k1'));
    const body = Buffer.concat([cipher.update(Buffer.from([1, 0, 5])), cipher.final()]);
    const broken = { ...payload, data: new Uint8Array(Buffer.concat([nonce, body, cipher.getAuthTag()])) };
    await expect(codec.decode([broken])).rejects.toThrow(/decrypted to a malformed payload: framing ends early/);
  });

  it('passes unencrypted payloads through decode (history written before the codec was enabled)', async () => {
    const payload = plain({ old: true });
    expect(await codec.decode([payload])).toEqual([payload]);
  });

  it('keys: 64 hex characters or base64 of 32 bytes, from a file or a variable; errors never echo the key', () => {
    const hex = key.toString('hex');
    expect(parseCodecKey(`${hex}\n`, 'x').equals(key)).toBe(true);
    expect(parseCodecKey(key.toString('base64'), 'x').equals(key)).toBe(true);
    const short = randomBytes(16).toString('hex');
    const error = (() => {
      try {
        parseCodecKey(short, 'key file /k');
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(error?.message).toMatch(/key file \/k: expected a 256-bit key.*got 32 characters, 24 bytes/);
    expect(error?.message).not.toContain(short);
    expect(() => parseCodecKey('not a key!', 'x')).toThrow(/neither/);

    const dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-codec-'));
    try {
      const file = path.join(dir, 'key');
      writeFileSync(file, hex);
      expect(loadCodecKey({ keyId: 'k1', keyFile: file }).equals(key)).toBe(true);
      expect(() => loadCodecKey({ keyId: 'k1', keyFile: path.join(dir, 'missing') })).toThrow(/missing: file not found/);
      expect(loadCodecKey({ keyId: 'k1', keyEnv: 'K' }, { K: hex }).equals(key)).toBe(true);
      expect(() => loadCodecKey({ keyId: 'k1', keyEnv: 'K' }, {})).toThrow(/environment variable K is not set/);
      expect(() => loadCodecKey({ keyId: 'k1' })).toThrow(/exactly one/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => new AesGcmCodec('bad id!', key)).toThrow(/key id/);
  });
});

describe('codec endpoint (HTTP, as the Temporal UI calls it)', () => {
  const codec = new AesGcmCodec('k1', randomBytes(32));
  const origin = 'http://localhost:8233';
  let server: CodecServer;
  beforeAll(async () => {
    server = await startCodecServer({ codec, corsOrigins: [origin] });
  });
  afterAll(async () => {
    await server?.close();
  });

  const post = (endpoint: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${endpoint}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Origin: origin, ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const toJson = (payloads: Payload[]) => ({
    payloads: payloads.map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
      data: Buffer.from(p.data ?? []).toString('base64'),
    })),
  });

  it('decodes what the workers encrypted, and encodes; CORS for the UI origin only', async () => {
    const encrypted = await codec.encode([plain({ body: SECRET_TEXT })]);
    const response = await post('/decode', toJson(encrypted));
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe(origin);
    const body = (await response.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(body.payloads[0]?.metadata.encoding ?? '', 'base64').toString()).toBe('json/plain');
    expect(JSON.parse(Buffer.from(body.payloads[0]?.data ?? '', 'base64').toString())).toEqual({ body: SECRET_TEXT });

    const encoded = (await (await post('/encode', toJson([plain(42)]))).json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(encoded.payloads[0]?.metadata.encoding ?? '', 'base64').toString()).toBe(ENCRYPTED_ENCODING);

    const preflight = await fetch(`${server.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/X-Namespace/);
    const foreign = await fetch(`${server.url}/decode`, { method: 'OPTIONS', headers: { Origin: 'http://evil.example' } });
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
    // A page of another origin gets nothing decoded, not even a response it cannot read.
    const foreignPost = await post('/decode', toJson(encrypted), { Origin: 'http://evil.example' });
    expect(foreignPost.status).toBe(403);
    expect(await foreignPost.text()).not.toContain(Buffer.from(JSON.stringify({ body: SECRET_TEXT })).toString('base64'));
    // The temporal CLI sends no Origin: allowed.
    const cliPost = await fetch(`${server.url}/decode`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(toJson(encrypted)) });
    expect(cliPost.status).toBe(200);
  });

  it('refuses a request addressed to another host name (DNS rebinding to 127.0.0.1)', async () => {
    const { port } = new URL(server.url);
    const encrypted = JSON.stringify(toJson(await codec.encode([plain({ body: SECRET_TEXT })])));
    const postWithHost = (host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const request = httpRequest({ host: '127.0.0.1', port: Number(port), path: '/decode', method: 'POST', headers: { Host: host, 'Content-Type': 'application/json' } }, (response) => {
          let body = '';
          response.on('data', (chunk: Buffer) => (body += chunk.toString()));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
        });
        request.on('error', reject);
        request.end(encrypted);
      });
    const rebound = await postWithHost(`evil.example:${port}`);
    expect(rebound.status).toBe(403);
    expect(rebound.body).toMatch(/host evil\.example/);
    expect(rebound.body).not.toContain(Buffer.from(JSON.stringify({ body: SECRET_TEXT })).toString('base64'));
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, 'LOCALHOST']) expect((await postWithHost(host)).status).toBe(200);
  });

  it('answers bad requests with a status and a reason', async () => {
    expect((await post('/decode', 'not json')).status).toBe(400);
    const shape = await post('/decode', { payloads: [{ data: '***' }] });
    expect(shape.status).toBe(400);
    expect(((await shape.json()) as { error: string }).error).toMatch(/base64/);
    const wrongKey = await post('/decode', toJson(await new AesGcmCodec('k1', randomBytes(32)).encode([plain(1)])));
    expect(wrongKey.status).toBe(400);
    expect(((await wrongKey.json()) as { error: string }).error).toMatch(/failed authentication/);
    expect((await post('/other', { payloads: [] })).status).toBe(404);
    expect((await fetch(`${server.url}/decode`)).status).toBe(405);
  });
});
