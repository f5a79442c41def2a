/**
 * Authentication of engine endpoints (SGLang / vLLM servers, a trainer service): the config names
 * an environment variable per engine (`engine.rollout.apiKeyEnv`, `engine.trainer.apiKeyEnv`);
 * HTTP adapters send its value as `Authorization: Bearer <key>` with every request, built here.
 * The key is read when the adapter is created, so a missing variable fails at worker start with
 * the variable's name; it never appears in an error, a log line or workflow history.
 */

export class EngineAuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineAuthError';
  }
}

/** Request headers for an engine endpoint: `{}` when it needs no key. */
export type EngineAuthHeaders = Readonly<Record<string, string>>;

/**
 * `Authorization: Bearer <value of $apiKeyEnv>`, or no header when `apiKeyEnv` is undefined.
 * `what` names the engine in errors ("engine.rollout").
 */
export function engineAuthHeaders(apiKeyEnv: string | undefined, what: string, env: NodeJS.ProcessEnv = process.env): EngineAuthHeaders {
  if (apiKeyEnv === undefined) return {};
  const key = env[apiKeyEnv];
  if (key === undefined || key === '') {
    throw new EngineAuthError(`${what}.apiKeyEnv names ${apiKeyEnv}, which is not set: export the engine's API key in ${apiKeyEnv} before starting the worker`);
  }
  // Whitespace or control characters would break (or inject into) the HTTP header.
  if (/[\s\p{Cc}]/u.test(key)) throw new EngineAuthError(`${what}: the API key in $${apiKeyEnv} contains whitespace or control characters`);
  return { Authorization: `Bearer ${key}` };
}

/**
 * What auth reads of a config's engine section (engine.rollout, engine.trainer): stated here, not
 * imported from the config, so that the config may depend on the engines and not the reverse.
 */
export interface EngineAuthSection {
  kind: string;
  apiKeyEnv?: string | undefined;
}

/** Headers for the rollout engines of a config (one key for every rank's endpoint). */
export function rolloutEngineAuthHeaders(engine: EngineAuthSection, env: NodeJS.ProcessEnv = process.env): EngineAuthHeaders {
  return engine.kind === 'simulated' ? {} : engineAuthHeaders(engine.apiKeyEnv, 'engine.rollout', env);
}

/** Headers for the trainer service of a config. */
export function trainerEngineAuthHeaders(engine: EngineAuthSection, env: NodeJS.ProcessEnv = process.env): EngineAuthHeaders {
  return engine.kind === 'simulated' ? {} : engineAuthHeaders(engine.apiKeyEnv, 'engine.trainer', env);
}

/** Replaces every occurrence of the secrets in `text` (for error bodies an engine echoes back). */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join('[redacted]');
  return out;
}

/**
 * What removes `apiKey` from text bound for an error (and so for workflow history), raw or
 * JSON-escaped: a server or a gateway may echo the request's headers back, in a body or a message.
 */
export function keyRedactor(apiKey: string | undefined): (text: string) => string {
  if (apiKey === undefined) return (text) => text;
  const secrets = [apiKey, JSON.stringify(apiKey).slice(1, -1)];
  return (text) => redactSecrets(text, secrets);
}

/** The secrets inside auth headers, for redactSecrets. */
export function headerSecrets(headers: EngineAuthHeaders): string[] {
  const authorization = headers.Authorization;
  return authorization === undefined ? [] : [authorization.replace(/^Bearer /, '')];
}
