/**
 * The OpenEnv environment's settings as this module reads them. The zod schema that validates
 * them lives with the run config (src/config/schema.ts, `openEnvEnvironmentSchema`), which checks
 * at compile time that what it produces is exactly this type; engines never import the config.
 */

/** How the model's text output becomes an OpenEnv action (actions.ts). */
export type ToolCallFormat =
  | { format: 'json' }
  | { format: 'text-argument'; tool: string; argument: string }
  | { format: 'text-field'; field: string };

export interface OpenEnvServerConfig {
  url: string;
  command?: string[] | undefined;
  cwd?: string | undefined;
  node: number;
}

export interface OpenEnvEnvironmentConfig {
  kind: 'openenv';
  servers: OpenEnvServerConfig[];
  sessionsPerServer: number;
  timeouts: { connectSeconds: number; resetSeconds: number; stepSeconds: number; idleSeconds: number };
  retries: number;
  apiKeyEnv?: string | undefined;
  seed: number;
  deterministic: boolean;
  toolCall: ToolCallFormat;
  observationField?: string | undefined;
  chatTemplate: { prompt: string; observation: string };
  tokenizer: { kind: 'engine' } | { kind: 'file'; path: string };
  reward: 'sum' | 'last';
  maxSteps?: number | undefined;
}

/** What the environment's tokenizer needs of the rollout engine section (engine.rollout). */
export type TokenizerRolloutEngine = { kind: 'simulated' } | { kind: 'sglang' | 'vllm'; apiKeyEnv?: string | undefined; model?: string | undefined };
