/**
 * Which `iterationProgress` signals the run workflow believes. Signals cannot be refused (they are
 * in history once sent), and anyone with access to the namespace can send one, so the handler
 * decides here: a payload that could not be decoded or fails the schema is rejected with its
 * reason; a report of another iteration, or one overtaken by a later report, is ignored (signals
 * are not ordered across children and are sent without waiting); a report of the current
 * iteration without the token the run gave that iteration is rejected as not from it.
 */
import type { z } from 'zod';
import type { IterationProgress } from '../contract/types';
import { isUndecodable } from '../temporal/payloadConverter';

export type ProgressVerdict =
  | { kind: 'accepted'; report: IterationProgress }
  | { kind: 'ignored' }
  | { kind: 'rejected'; reason: string };

export interface ProgressExpectation {
  iteration: number;
  /** The token given to the running iteration; undefined while none runs. */
  token: string | undefined;
  /** The report in force, if any. */
  current: IterationProgress | undefined;
}

export function judgeProgress(payload: unknown, schema: z.ZodType<IterationProgress>, expected: ProgressExpectation): ProgressVerdict {
  if (isUndecodable(payload)) return { kind: 'rejected', reason: `iterationProgress signal rejected, payload cannot be decoded: ${payload.undecodablePayload}` };
  if (!isPlainObject(payload)) return { kind: 'rejected', reason: `iterationProgress signal ignored, bad payload: expected an object, got ${kindOf(payload)}` };
  const parsed = schema.safeParse(payload);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(payload)'}: ${issue.message}`).join('; ');
    return { kind: 'rejected', reason: `iterationProgress signal ignored, bad payload: ${issues}` };
  }
  const report = parsed.data;
  if (report.iteration !== expected.iteration) return { kind: 'ignored' };
  if (expected.token === undefined || report.token !== expected.token) {
    return { kind: 'rejected', reason: `iterationProgress signal rejected: not sent by the running execution of iteration ${report.iteration + 1} (wrong or missing token)` };
  }
  const current = expected.current;
  const overtaken = current?.iteration === report.iteration && (report.sequence ?? 0) < (current.sequence ?? 0);
  return overtaken ? { kind: 'ignored' } : { kind: 'accepted', report };
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return `${value.length} raw bytes`;
  return typeof value === 'object' ? 'a non-plain object' : typeof value;
}
