/**
 * One OpenEnv episode's session: a WebSocket to the server's `/ws`, which holds one environment
 * instance for as long as the connection lives. Requests go one at a time (the protocol answers
 * in order). A closed socket, a timeout or a connection failure is EnvironmentUnavailableError
 * and leaves the session closed (the episode's state on the server is gone with it); a malformed
 * answer is EnvironmentProtocolError and closes it too (the stream can no longer be trusted).
 */
import WebSocket from 'ws';
import { z } from 'zod';
import { keyRedactor } from '../auth';
import { EnvironmentProtocolError, EnvironmentUnavailableError, ServerAtCapacityError } from './errors';
import { sessionUrl, UNAVAILABLE_ERROR_CODES, wsAnswerSchema, type OpenEnvAction, type OpenEnvStepResult } from './protocol';

export interface SessionOptions {
  serverUrl: string;
  apiKey?: string;
  connectTimeoutMs: number;
}

const EXCERPT = 300;

export class OpenEnvSession {
  private pending: { resolve(answer: OpenEnvStepResult): void; reject(error: Error): void; timer: NodeJS.Timeout } | undefined;
  private closedBecause: string | undefined;
  /** The error that ended the session (the first one). */
  private closedBy: Error | undefined;

  private constructor(
    private readonly socket: WebSocket,
    readonly where: string,
    /** Server text bound for an error, without the API key. */
    private readonly redact: (text: string) => string,
  ) {
    socket.on('message', (data) => this.onMessage(String(data)));
    socket.on('close', (code, reason) => this.fail(new EnvironmentUnavailableError(this.where, `the WebSocket closed (code ${code}${reason.length > 0 ? `, ${redact(reason.toString())}` : ''})`)));
    socket.on('error', (error) => this.fail(new EnvironmentUnavailableError(this.where, `WebSocket error: ${error.message}`)));
  }

  /** Opens a session (a new environment instance on the server). */
  static open(options: SessionOptions): Promise<OpenEnvSession> {
    const url = sessionUrl(options.serverUrl);
    const where = `OpenEnv session ${url}`;
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, {
        handshakeTimeout: options.connectTimeoutMs,
        ...(options.apiKey === undefined ? {} : { headers: { Authorization: `Bearer ${options.apiKey}` } }),
      });
      const onError = (error: Error) => {
        socket.removeAllListeners();
        socket.on('error', () => undefined);
        socket.terminate();
        reject(new EnvironmentUnavailableError(where, `cannot connect: ${error.message}`));
      };
      socket.once('error', onError);
      socket.once('unexpected-response', (_request, response) => {
        const status = response.statusCode;
        // A refusal no retry changes (no /ws route, bad credentials) is the setup's error, not a lost session.
        if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
          socket.removeAllListeners();
          socket.on('error', () => undefined);
          socket.terminate();
          const noRoute = 'engine.environment.servers[].url must be the base URL of an OpenEnv server, which serves its sessions at /ws';
          const hint =
            status === 401
              ? 'the server refused the credentials: check engine.environment.apiKeyEnv'
              : status === 403
                ? `the server refused the session: its credentials (engine.environment.apiKeyEnv), or no WebSocket route here (a FastAPI server answers 403 for one it lacks): ${noRoute}`
                : status === 404
                  ? `no WebSocket route here: ${noRoute}`
                  : 'the server refused the session';
          reject(new EnvironmentProtocolError(where, `HTTP ${status} on the WebSocket upgrade: ${hint}`));
          return;
        }
        onError(new Error(`HTTP ${status ?? '?'} on the WebSocket upgrade`));
      });
      socket.once('open', () => {
        socket.removeListener('error', onError);
        socket.removeAllListeners('unexpected-response');
        resolve(new OpenEnvSession(socket, where, keyRedactor(options.apiKey)));
      });
    });
  }

  get closed(): boolean {
    return this.closedBecause !== undefined;
  }

  reset(data: Record<string, unknown>, timeoutMs: number): Promise<OpenEnvStepResult> {
    return this.request({ type: 'reset', data }, timeoutMs, 'reset');
  }

  step(action: OpenEnvAction, timeoutMs: number): Promise<OpenEnvStepResult> {
    return this.request({ type: 'step', data: action }, timeoutMs, 'step');
  }

  /** Ends the session (the server destroys its environment). Idempotent. */
  close(): void {
    if (this.closed) return;
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: 'close' }));
    this.fail(new EnvironmentUnavailableError(this.where, 'the session was closed by this client'));
    this.socket.close();
  }

  private request(message: { type: string; data: unknown }, timeoutMs: number, what: string): Promise<OpenEnvStepResult> {
    if (this.closedBecause !== undefined) {
      // A server at its limit may say so before it is asked (it creates the session on connecting):
      // the request fails as that, backpressure, not as a lost session.
      const atCapacity = this.closedBy instanceof ServerAtCapacityError ? this.closedBy : undefined;
      return Promise.reject(atCapacity ?? new EnvironmentUnavailableError(this.where, `${what} on a closed session (${this.closedBecause})`));
    }
    if (this.pending !== undefined) return Promise.reject(new Error(`${this.where}: ${what} while another request is in flight (one request at a time per session)`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late answer must never be taken for the next request's: the session ends here.
        this.fail(new EnvironmentUnavailableError(this.where, `${what} had no answer within ${timeoutMs} ms`));
        this.socket.terminate();
      }, timeoutMs);
      this.pending = { resolve, reject, timer };
      this.socket.send(JSON.stringify(message), (error) => {
        if (error !== undefined && error !== null) this.fail(new EnvironmentUnavailableError(this.where, `cannot send ${what}: ${error.message}`));
      });
    });
  }

  private onMessage(text: string): void {
    const pending = this.pending;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.fail(new EnvironmentProtocolError(this.where, `expected a JSON message, got ${this.excerpt(text)}`));
      this.socket.terminate();
      return;
    }
    const parsed = wsAnswerSchema.safeParse(value);
    if (!parsed.success) {
      this.fail(new EnvironmentProtocolError(this.where, `malformed answer: ${this.redact(z.prettifyError(parsed.error).replace(/\n/g, '; '))}: ${this.excerpt(text)}`));
      this.socket.terminate();
      return;
    }
    const answer = parsed.data;
    if (pending === undefined) {
      // An error the server sends unasked (at its session limit, before any request) ends the
      // session with that error; anything else unasked is a protocol error.
      this.fail(answer.type === 'error' ? this.serverError(answer.data) : new EnvironmentProtocolError(this.where, `an answer no request asked for: ${this.excerpt(text)}`));
      this.socket.terminate();
      return;
    }
    this.pending = undefined;
    clearTimeout(pending.timer);
    if (answer.type === 'observation') return pending.resolve(answer.data);
    if (answer.type === 'error') return pending.reject(this.serverError(answer.data));
    pending.reject(new EnvironmentProtocolError(this.where, `expected an observation, got a ${answer.type} message`));
  }

  /** A server's error message as the error it stands for: at capacity, unavailable (retried), or the server's protocol error. */
  private serverError(data: { code?: string | undefined; message: string } & Record<string, unknown>): Error {
    const code = data.code ?? 'UNKNOWN';
    const message = this.redact(data.message);
    if (code === 'CAPACITY_REACHED') {
      const maxSessions = z.number().int().positive().safeParse(data['max_sessions']);
      return new ServerAtCapacityError(this.where, `server error ${code}: ${message}`, maxSessions.success ? maxSessions.data : undefined);
    }
    return UNAVAILABLE_ERROR_CODES.includes(code)
      ? new EnvironmentUnavailableError(this.where, `server error ${code}: ${message}`)
      : new EnvironmentProtocolError(this.where, `server error ${code}: ${message}`, code);
  }

  /** The start of a server's message, quoted, for an error: redacted before it is cut (a cut could split the key). */
  private excerpt(text: string): string {
    return JSON.stringify(this.redact(text).slice(0, EXCERPT));
  }

  /** Ends the session for `error`: the request in flight (if any) fails with it. */
  private fail(error: Error): void {
    this.closedBecause ??= error.message;
    this.closedBy ??= error;
    const pending = this.pending;
    if (pending === undefined) return;
    this.pending = undefined;
    clearTimeout(pending.timer);
    pending.reject(error);
  }
}
