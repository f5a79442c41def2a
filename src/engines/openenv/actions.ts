/**
 * The model's text → an OpenEnv action, and an observation → text (before the chat template).
 *
 * Tool-call formats (engine.environment.toolCall):
 * - json (default): the text holds one JSON object {"name": tool, "arguments": {...}} (the
 *   OpenAI / Hermes tool-call shape), sent as OpenEnv's call_tool action.
 * - text-argument: the whole text is one argument of a fixed tool: call_tool(tool, {argument: text}).
 * - text-field: the whole text is one field of the environment's own action model: {field: text}.
 * Text that is not a tool call is not sent: the turn's observation says why (the model learns from it).
 */
import { z } from 'zod';
import type { ToolCallFormat } from './config';
import { EnvironmentProtocolError } from './errors';
import type { OpenEnvAction } from './protocol';

export type { ToolCallFormat } from './config';
export type ActionOrInvalid = { action: OpenEnvAction } | { invalid: string };

const jsonToolCall = z.object({ name: z.string().min(1), arguments: z.record(z.string(), z.unknown()).default({}) }).strict();

export function buildAction(text: string, format: ToolCallFormat): ActionOrInvalid {
  switch (format.format) {
    case 'text-argument':
      return { action: { type: 'call_tool', tool_name: format.tool, arguments: { [format.argument]: text } } };
    case 'text-field':
      return { action: { [format.field]: text } };
    case 'json': {
      const start = text.indexOf('{');
      const end = text.lastIndexOf('}');
      if (start < 0 || end < start) return { invalid: 'no JSON object in the text' };
      let value: unknown;
      try {
        value = JSON.parse(text.slice(start, end + 1));
      } catch (error) {
        return { invalid: `the tool call is not JSON (${error instanceof Error ? error.message : String(error)})` };
      }
      const call = jsonToolCall.safeParse(value);
      if (!call.success) return { invalid: `expected {"name": string, "arguments": object}: ${z.prettifyError(call.error).replace(/\n/g, '; ')}` };
      return { action: { type: 'call_tool', tool_name: call.data.name, arguments: call.data.arguments } };
    }
  }
}

/** The observation's text: one field (a string, or a number/boolean shown as text), or the whole observation as JSON. */
export function observationText(observation: Record<string, unknown>, field: string | undefined, where: string): string {
  if (field === undefined) return JSON.stringify(observation);
  const value = observation[field];
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new EnvironmentProtocolError(where, `the observation has no text field ${JSON.stringify(field)} (fields: ${Object.keys(observation).join(', ') || 'none'})`);
}

/** The chat template applied to an environment text: `{observation}` replaced. */
export function renderTemplate(template: string, text: string): string {
  return template.split('{observation}').join(text);
}
