/**
 * The codec endpoint the Temporal UI (and `temporal` CLI, `--codec-endpoint`) calls to show
 * encrypted payloads: POST <base>/decode and POST <base>/encode with a JSON body
 * `{ "payloads": [{ "metadata": { "<key>": "<base64>" }, "data": "<base64>" }] }` and the same
 * shape back. CORS answers only the configured origins (the UI's), with the headers the UI sends.
 *
 * Anyone who can reach this endpoint can decrypt: bind it to localhost or put it behind the
 * same authentication as the UI.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { z } from 'zod';

const MAX_BODY_BYTES = 16 * 1024 * 1024;
const ALLOWED_HEADERS = 'Content-Type, X-Namespace, Authorization';

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, { error: 'expected base64' });
const jsonPayloadsSchema = z.object({
  payloads: z.array(
    z.object({
      metadata: z.record(z.string(), base64).optional(),
      data: base64.optional(),
    }),
  ),
});
type JsonPayloads = z.infer<typeof jsonPayloadsSchema>;

function fromJson(body: JsonPayloads): Payload[] {
  return body.payloads.map((payload) => {
    const metadata: Record<string, Uint8Array> = {};
    for (const [key, value] of Object.entries(payload.metadata ?? {})) metadata[key] = new Uint8Array(Buffer.from(value, 'base64'));
    return { metadata, data: new Uint8Array(Buffer.from(payload.data ?? '', 'base64')) };
  });
}

function toJson(payloads: Payload[]): JsonPayloads {
  return {
    payloads: payloads.map((payload) => {
      const metadata: Record<string, string> = {};
      for (const [key, value] of Object.entries(payload.metadata ?? {})) metadata[key] = Buffer.from(value).toString('base64');
      return { metadata, data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64') };
    }),
  };
}

export interface CodecServerOptions {
  codec: PayloadCodec;
  host?: string;
  /** 0 = a free port. */
  port?: number;
  /** Origins allowed to call from a browser (the Temporal UI's), e.g. http://localhost:8233. */
  corsOrigins: readonly string[];
  log?: (line: string) => void;
}

export interface CodecServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new RequestError(413, `request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** The name in a Host header, without its port (`[::1]:80` → `[::1]`). */
function hostName(header: string): string {
  return header.startsWith('[') ? header.slice(0, header.indexOf(']') + 1) : header.replace(/:\d+$/, '');
}

/**
 * Bound to loopback, the endpoint answers only requests addressed to a loopback name: a page whose
 * own name was rebound to 127.0.0.1 (DNS rebinding) sends its own name as Host, and is refused.
 */
function checkHost(request: IncomingMessage, bindHost: string): void {
  if (!LOOPBACK_NAMES.has(bindHost)) return;
  const host = request.headers.host;
  if (host === undefined || !LOOPBACK_NAMES.has(hostName(host).toLowerCase())) {
    throw new RequestError(403, `host ${host ?? '(none)'} is not this endpoint's: it answers only requests to localhost, 127.0.0.1 or [::1]`);
  }
}

export async function startCodecServer(options: CodecServerOptions): Promise<CodecServer> {
  const log = options.log ?? (() => undefined);
  const origins = new Set(options.corsOrigins);
  const bindHost = options.host ?? '127.0.0.1';

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    checkHost(request, bindHost);
    const origin = request.headers.origin;
    if (origin !== undefined && origins.has(origin)) {
      response.setHeader('Access-Control-Allow-Origin', origin);
      response.setHeader('Access-Control-Allow-Credentials', 'true');
      response.setHeader('Vary', 'Origin');
    }
    // A browser page from another origin must not make us decode at all (its request would be
    // processed even though it could not read the answer). Callers without an Origin (the
    // temporal CLI, curl) are not browsers.
    if (origin !== undefined && !origins.has(origin)) throw new RequestError(403, `origin ${origin} is not allowed`);
    if (request.method === 'OPTIONS') {
      if (origin === undefined) throw new RequestError(403, 'a preflight without an origin');
      response.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      response.setHeader('Access-Control-Allow-Headers', ALLOWED_HEADERS);
      response.writeHead(204).end();
      return;
    }
    const pathname = new URL(request.url ?? '/', 'http://codec').pathname;
    const operation = pathname.endsWith('/decode') ? 'decode' : pathname.endsWith('/encode') ? 'encode' : undefined;
    if (operation === undefined) throw new RequestError(404, `no such endpoint ${pathname}: POST .../encode or .../decode`);
    if (request.method !== 'POST') throw new RequestError(405, `${request.method ?? '?'} ${pathname}: expected POST`);
    let body: unknown;
    try {
      body = JSON.parse(await readBody(request));
    } catch (error) {
      if (error instanceof RequestError) throw error;
      throw new RequestError(400, `body is not JSON: ${error instanceof Error ? error.message : String(error)}`);
    }
    const parsed = jsonPayloadsSchema.safeParse(body);
    if (!parsed.success) throw new RequestError(400, `expected {"payloads": [{"metadata": {...}, "data": "<base64>"}]}: ${z.prettifyError(parsed.error)}`);
    const payloads = fromJson(parsed.data);
    let result: Payload[];
    try {
      result = operation === 'decode' ? await options.codec.decode(payloads) : await options.codec.encode(payloads);
    } catch (error) {
      throw new RequestError(400, `${operation} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(toJson(result)));
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      const status = error instanceof RequestError ? error.status : 500;
      const message = error instanceof Error ? error.message : String(error);
      log(`codec endpoint: ${request.method ?? '?'} ${request.url ?? ''} -> ${status}: ${message}`);
      if (!response.headersSent) response.writeHead(status, { 'Content-Type': 'application/json', ...(status === 413 ? { Connection: 'close' } : {}) });
      response.end(JSON.stringify({ error: message }));
      // Do not keep reading an upload we refused.
      if (status === 413) request.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, bindHost, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.address}:${address.port}`,
    server,
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}
