/**
 * Small JSON files written atomically (a temp file or a spare renamed over the file), so a reader
 * never sees a torn file even if the writer dies mid-write. Used for the engines' persisted state
 * (which models an engine process that outlives the worker driving it) and for exported weights.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { replaceFileSync } from '../../files/spareFiles';

/** Writes `value` as JSON to `file` atomically; creates the directory if needed. */
export function writeJsonAtomic(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  replaceFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Reads and validates a state file. Returns undefined if it does not exist; throws naming the
 * file if it is unreadable, not JSON, or fails the schema (a corrupt state must not be ignored).
 */
export function readStateFile<T>(file: string, schema: z.ZodType<T>, what: string): T | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${what} state file ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} state file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`${what} state file ${file} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}
