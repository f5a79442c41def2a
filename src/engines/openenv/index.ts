/**
 * OpenEnv environments (engine.environment.kind: openenv): the adapter, its tokenizer and the
 * supervised server processes. docs/engine-protocol.md ("Environment") is the contract.
 */
import type { OpenEnvEnvironmentConfig, TokenizerRolloutEngine } from './config';
import { engineAuthHeaders, headerSecrets } from '../auth';
import { OpenEnvEnvironment } from './environment';
import { SupervisedServer } from './supervisor';
import { EngineTokenizer, FailoverTokenizer, VocabularyTokenizer, type Tokenizer } from './tokenizer';

export { OpenEnvEnvironment } from './environment';
export { EnvironmentProtocolError, EnvironmentUnavailableError, EpisodeLostError, EPISODE_LOST_REASONS, ServerAtCapacityError } from './errors';
export { EngineTokenizer, FailoverTokenizer, VocabularyTokenizer, type Tokenizer } from './tokenizer';
export { SupervisedServer } from './supervisor';

/**
 * The tokenizer of the rollout engines at `endpoints` (their own /tokenize, tried in this order:
 * an engine that does not answer hands the call to the next), or the configured file.
 */
export function environmentTokenizer(config: OpenEnvEnvironmentConfig, rollout: TokenizerRolloutEngine, endpoints: readonly string[]): Tokenizer {
  if (config.tokenizer.kind === 'file') return VocabularyTokenizer.fromFile(config.tokenizer.path);
  if (rollout.kind === 'simulated') throw new Error('engine.environment.tokenizer: kind engine needs real rollout engines (sglang | vllm)');
  // Ranks that share an engine share its URL: each engine once, in the order of its first rank.
  const unique = [...new Set(endpoints)];
  if (unique.length === 0) throw new Error('engine.environment.tokenizer: no rollout endpoint to tokenize with');
  const [apiKey] = headerSecrets(engineAuthHeaders(rollout.apiKeyEnv, 'engine.rollout'));
  return new FailoverTokenizer(
    unique.map((baseUrl) => ({
      name: baseUrl,
      tokenizer: new EngineTokenizer({ baseUrl, kind: rollout.kind, ...(rollout.model === undefined ? {} : { model: rollout.model }), ...(apiKey === undefined ? {} : { apiKey }) }),
    })),
  );
}

/**
 * The environment for a worker that tokenizes with the rollout engines at `endpoints` (its own
 * first; see environmentTokenizer). With `superviseOnNode` (a gpu-node worker), the servers
 * configured with a command for that node are started here and restarted when they exit. Other workers (the orchestrator) do not wait for
them: a reset that finds a server not serving yet fails as unavailable, tries the next server,
and the activity is retried by Temporal until one serves.
 */
export function createOpenEnvEnvironment(
  config: OpenEnvEnvironmentConfig,
  rollout: TokenizerRolloutEngine,
  endpoints: readonly string[],
  options: { superviseOnNode?: number; log?: (line: string) => void } = {},
): OpenEnvEnvironment {
  const [apiKey] = headerSecrets(engineAuthHeaders(config.apiKeyEnv, 'engine.environment'));
  const supervised = config.servers.map((server) =>
    server.command === undefined || options.superviseOnNode !== server.node
      ? undefined
      : new SupervisedServer({ url: server.url, command: server.command, ...(server.cwd === undefined ? {} : { cwd: server.cwd }) }, { ...(options.log === undefined ? {} : { log: options.log }) }),
  );
  for (const server of supervised) void server?.ready().catch(() => undefined);
  return new OpenEnvEnvironment({
    config,
    tokenizer: environmentTokenizer(config, rollout, endpoints),
    ...(apiKey === undefined ? {} : { apiKey }),
    supervised,
    ...(options.log === undefined ? {} : { log: options.log }),
  });
}
