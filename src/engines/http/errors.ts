/**
 * Errors of the HTTP engine adapters. Each names the endpoint (method + URL) it came from.
 *
 * - EngineHttpError: the engine answered with a non-2xx status or could not be reached; may be
 *   transient (a restarting engine), so activities let Temporal retry it.
 * - EngineProtocolError: the engine answered 2xx with a body that does not match its protocol
 *   (or the adapter was asked for something the engine cannot do); retrying cannot help.
 */
export class EngineHttpError extends Error {
  constructor(
    readonly endpoint: string,
    /** HTTP status, or undefined when no response arrived (connection refused, reset...). */
    readonly status: number | undefined,
    detail: string,
  ) {
    super(`${endpoint}: ${status === undefined ? 'no response' : `HTTP ${status}`}: ${detail}`);
    this.name = 'EngineHttpError';
  }
}

export class EngineProtocolError extends Error {
  constructor(
    readonly endpoint: string,
    detail: string,
  ) {
    super(`${endpoint}: ${detail}`);
    this.name = 'EngineProtocolError';
  }
}
