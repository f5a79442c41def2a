/**
 * "Did you mean" for unknown config keys: the known keys at the same place in the schema that
 * differ only in case, or by at most two edits (`batchsize` → `batchSize`).
 */
import type { z } from 'zod';

interface SchemaDef {
  type?: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  schema?: z.ZodType;
  element?: z.ZodType;
}

const defOf = (schema: z.ZodType): SchemaDef => (schema as unknown as { _zod: { def: SchemaDef } })._zod.def;

/** The object schema's keys at `path` (wrappers such as optional, default or pipe unwrapped). */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let current: z.ZodType | undefined = schema;
  let segments = [...path];
  for (let guard = 0; current !== undefined && guard < 64; guard++) {
    const def = defOf(current);
    if (def.shape !== undefined) {
      if (segments.length === 0) return Object.keys(def.shape);
      const [head, ...rest] = segments;
      current = def.shape[String(head)];
      segments = rest;
    } else if (def.element !== undefined && typeof segments[0] === 'number') {
      current = def.element;
      segments = segments.slice(1);
    } else {
      current = def.innerType ?? def.in ?? def.schema;
    }
  }
  return [];
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] as number;
      row[j] = Math.min(above + 1, (row[j - 1] as number) + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length] as number;
}

/** The closest known key, if one is close enough to be what was meant. */
export function didYouMean(unknown: string, known: readonly string[]): string | undefined {
  const sameCase = known.find((key) => key.toLowerCase() === unknown.toLowerCase());
  if (sameCase !== undefined) return sameCase;
  const ranked = known.map((key) => ({ key, distance: editDistance(unknown.toLowerCase(), key.toLowerCase()) })).sort((a, b) => a.distance - b.distance);
  const best = ranked[0];
  return best !== undefined && best.distance <= Math.min(2, Math.floor(unknown.length / 3)) ? best.key : undefined;
}
