/**
 * OpenEnv's wire protocol (openenv 0.10, `openenv/core/env_server/http_server.py`):
 *
 * - HTTP `POST /reset` {seed?, episode_id?, ...} and `POST /step` {action}: stateless (a fresh
 *   environment per request) → {observation: {...}, reward, done}.
 * - WebSocket `/ws`: one environment per connection (a session). Client messages
 *   {type: "reset", data: {seed, episode_id}}, {type: "step", data: <action>}, {type: "state"},
 *   {type: "close"}; answers {type: "observation", data: {observation, reward, done}},
 *   {type: "state", data}, {type: "error", data: {message, code}}.
 * - Actions are the environment's own model; `{type: "call_tool", tool_name, arguments}` is the
 *   tool-call action of MCP environments.
 *
 * Every answer is validated here: it is input like any other.
 */
import { z } from 'zod';

/** One reset or step answer: the observation's fields (reward, done and metadata apart). */
export const stepResultSchema = z
  .object({
    observation: z.record(z.string(), z.unknown()),
    reward: z.number().finite().nullable().optional(),
    done: z.boolean(),
  })
  .loose();
export type OpenEnvStepResult = z.infer<typeof stepResultSchema>;

export const wsAnswerSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('observation'), data: stepResultSchema }).loose(),
  z.object({ type: z.literal('state'), data: z.record(z.string(), z.unknown()) }).loose(),
  z.object({ type: z.literal('error'), data: z.object({ message: z.string(), code: z.string().optional() }).loose() }).loose(),
]);
export type WsAnswer = z.infer<typeof wsAnswerSchema>;

/** OpenEnv's WSErrorCode values that mean "no capacity now", not "bad request". */
export const UNAVAILABLE_ERROR_CODES: readonly string[] = ['CAPACITY_REACHED', 'SESSION_ERROR', 'FACTORY_ERROR'];

/** A JSON action for OpenEnv's step. */
export type OpenEnvAction = Record<string, unknown>;

/** ws(s)://host/ws for an http(s) server URL. */
export function sessionUrl(serverUrl: string): string {
  const url = new URL(serverUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/ws`;
  return url.toString();
}
