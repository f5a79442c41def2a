/**
 * A small JSON-over-HTTP client for engine adapters: bearer auth, zod-validated responses,
 * errors that name the endpoint and the status. Uses the global fetch (Node >= 20).
 */
import { z } from 'zod';
import { keyRedactor } from '../auth';
import { EngineHttpError, EngineProtocolError } from './errors';

export interface HttpClientOptions {
  /** Base URL of the engine, e.g. http://10.0.0.5:30000 */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` when set. */
  apiKey?: string;
  /** Per-call time limit for control calls (generation calls have none: an abort ends them). */
  controlTimeoutMs?: number;
}

const BODY_EXCERPT = 300;

/**
 * A reload of weights from disk: a large checkpoint takes minutes, past the control calls'
 * limit, and a call cut off by its own limit would be retried while the first load still runs.
 */
export const WEIGHT_RELOAD_TIMEOUT_MS = 30 * 60_000;

export class HttpClient {
  readonly baseUrl: string;
  /** Engine text that goes into an error without the API key (src/engines/auth.ts, keyRedactor). */
  readonly redact: (text: string) => string;
  private readonly apiKey: string | undefined;
  private readonly controlTimeoutMs: number;

  constructor(options: HttpClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.controlTimeoutMs = options.controlTimeoutMs ?? 120_000;
    this.redact = keyRedactor(options.apiKey);
  }

  endpoint(method: string, path: string): string {
    return `${method} ${this.baseUrl}${path}`;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { 'Content-Type': 'application/json', ...(this.apiKey === undefined ? {} : { Authorization: `Bearer ${this.apiKey}` }), ...extra };
  }

  /** Sends the request; a non-2xx status or a network failure throws EngineHttpError. */
  async send(method: 'GET' | 'POST', path: string, body: unknown, options: { signal?: AbortSignal; timeoutMs?: number | null } = {}): Promise<Response> {
    const endpoint = this.endpoint(method, path);
    const timeoutMs = options.timeoutMs === undefined ? this.controlTimeoutMs : options.timeoutMs;
    const signals = [options.signal, timeoutMs === null ? undefined : AbortSignal.timeout(timeoutMs)].filter((s): s is AbortSignal => s !== undefined);
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: this.headers(),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signals.length === 0 ? {} : { signal: AbortSignal.any(signals) }),
      });
    } catch (error) {
      if (options.signal?.aborted === true) throw error;
      throw new EngineHttpError(endpoint, undefined, describe(error));
    }
    if (!response.ok) {
      const text = await response.text().catch((error: unknown) => `(body unreadable: ${describe(error)})`);
      // An engine may echo the request's headers back: never let the key into an error (and history).
      const body = this.redact(text);
      throw new EngineHttpError(endpoint, response.status, body.slice(0, BODY_EXCERPT) || response.statusText);
    }
    return response;
  }

  /** Sends and parses the JSON answer with `schema`; a malformed answer throws EngineProtocolError. */
  async json<S extends z.ZodType>(method: 'GET' | 'POST', path: string, body: unknown, schema: S, options: { signal?: AbortSignal; timeoutMs?: number | null } = {}): Promise<z.infer<S>> {
    const response = await this.send(method, path, body, options);
    const text = await this.body(method, path, response, () => response.text(), options.signal);
    return parseJson(this.endpoint(method, path), this.redact(text), schema);
  }

  /** Sends and ignores the body (SGLang answers some control calls with plain text). */
  async call(method: 'GET' | 'POST', path: string, body?: unknown, options: { signal?: AbortSignal; timeoutMs?: number | null } = {}): Promise<void> {
    const response = await this.send(method, path, body, options);
    await this.body(method, path, response, () => response.arrayBuffer(), options.signal);
  }

  /** Reads a 2xx answer's body: one cut off (the engine died or the time limit passed mid-answer) is no answer, with the endpoint. */
  private async body<T>(method: 'GET' | 'POST', path: string, response: Response, read: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    try {
      return await read();
    } catch (error) {
      // The caller's own abort stays what it is (as in send).
      if (signal?.aborted === true) throw error;
      throw new EngineHttpError(this.endpoint(method, path), response.status, `the answer's body was cut off: ${this.redact(describe(error))}`);
    }
  }
}

export function parseJson<S extends z.ZodType>(endpoint: string, text: string, schema: S): z.infer<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new EngineProtocolError(endpoint, `expected JSON, got ${JSON.stringify(text.slice(0, BODY_EXCERPT))}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new EngineProtocolError(endpoint, `malformed response: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`);
  }
  return parsed.data;
}

export function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

/** Integer weight versions travel as strings in SGLang and vLLM ("weight_version": "3"). */
export function parseVersion(endpoint: string, value: string | number): number {
  const text = String(value);
  if (!/^\d+$/.test(text)) {
    throw new EngineProtocolError(endpoint, `weight_version ${JSON.stringify(value)} is not a non-negative integer (start the engine with --weight-version 0)`);
  }
  return Number(text);
}

/** The answer of an endpoint a server may not serve: undefined where it answers HTTP 404. */
export async function unlessNotServed<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (error) {
    if (error instanceof EngineHttpError && error.status === 404) return undefined;
    throw error;
  }
}
