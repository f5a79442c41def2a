/** Shared set-up of the OpenEnv tests: the environment's config with defaults, the agent model's vocabulary. */
import path from 'node:path';
import { openEnvEnvironmentSchema, type OpenEnvEnvironmentConfig } from '../../../src/config/schema';
import { VocabularyTokenizer } from '../../../src/engines/openenv';
import { REFERENCE_DIR } from '../../../src/engines/reference/launch';

export const AGENT_MODEL_CONFIG = path.join(REFERENCE_DIR, 'configs', 'agent.json');
/** engines/reference/configs/agent.json: token id i is VOCABULARY[i]; EOS is 14. */
export const VOCABULARY = '0123456789?+-!';
export const EOS = 14;

export function openEnvConfig(urls: readonly string[], overrides: Record<string, unknown> = {}): OpenEnvEnvironmentConfig {
  return openEnvEnvironmentSchema.parse({
    kind: 'openenv',
    servers: urls.map((url) => ({ url })),
    toolCall: { format: 'text-argument', tool: 'press', argument: 'digit' },
    observationField: 'text',
    deterministic: true,
    ...overrides,
  });
}

export function agentTokenizer(): VocabularyTokenizer {
  return VocabularyTokenizer.fromFile(AGENT_MODEL_CONFIG);
}

export const id = (char: string): number => VOCABULARY.indexOf(char);
export const digitOf = (tokenId: number): number => Number(VOCABULARY[tokenId]);
/** The right press for a shown digit (the vault's shift is 3). */
export const answerId = (shownId: number): number => id(String((digitOf(shownId) + 3) % 10));
