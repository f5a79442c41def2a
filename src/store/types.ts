/**
 * Trajectory store records (claim-check pattern): sample bodies live here, workflow history
 * carries only sample ids, counts and versions.
 *
 * Everything read back from disk is validated with these zod schemas; the cross-field
 * invariants (turn numbering, status-dependent fields) are part of the schemas so a record that
 * parses is a record the rest of the system may trust.
 */
import { z } from 'zod';
import { addTokenLags, contextSums, type LagHistogram } from '../gpu/staleness';

const count = z.number().int().nonnegative();

/** Sample ids, iterations and versions: non-negative safe integers. */
export const MAX_ID = Number.MAX_SAFE_INTEGER;

/**
 * The weight versions of a turn's generated tokens, as runs in order (a turn resumed across a weight
 * sync holds tokens of two or more versions). Absent on records written before per-token versions:
 * then every token has the turn's weightVersion (see turnVersionSpans).
 */
const tokenVersionsSchema = z.array(z.object({ version: count, tokens: count }).strict());

/** One completed turn: one generation plus the environment step that followed it. */
export const turnRecordSchema = z.object({
  /** 0-based index of the turn within the trajectory. */
  turn: count,
  generatedTokens: count,
  observationTokens: count,
  /** Weight version that generated the turn (the last one, if the turn was resumed). */
  weightVersion: count,
  /** Versions of the generated tokens, in order (a turn resumed across a weight sync spans several). */
  tokenVersions: tokenVersionsSchema.optional(),
  /** Rollout rank that finished the turn. */
  rank: count,
  /** Real engines: the generated ids (generatedTokens of them) with their sampling logprobs. */
  outputIds: z.array(count).optional(),
  logprobs: z.array(z.number()).optional(),
  /** Real engines: the observation's ids (observationTokens of them). */
  observationIds: z.array(count).optional(),
  /** The turn was resumed from a partial prefix of `tokens` tokens generated on `rank` (a migration). */
  resumedFrom: z.object({ rank: count, tokens: count }).optional(),
  /**
   * Set when the environment ended the trajectory with this turn. Checkpointed with the turn, so
   * a worker that dies before marking the sample completed leaves it finishable (found by the soak).
   */
  final: z.object({ reward: z.number() }).strict().optional(),
});
export type TurnRecord = z.infer<typeof turnRecordSchema>;

/** A turn cut short by cancellation: the tokens generated so far, so the turn resumes elsewhere. */
export const partialTurnSchema = z.object({
  turn: count,
  tokens: count,
  weightVersion: count,
  /** Versions of the prefix's tokens, in order. */
  tokenVersions: tokenVersionsSchema.optional(),
  rank: count,
  /** Real engines: the prefix's ids (tokens of them) and logprobs, so another rank resumes from them. */
  ids: z.array(count).optional(),
  logprobs: z.array(z.number()).optional(),
  /** The generation of the turn had finished (stopped during the environment step): resume skips generation. */
  finished: z.boolean().optional(),
});
export type PartialTurn = z.infer<typeof partialTurnSchema>;

export const sampleStatusSchema = z.enum(['running', 'completed', 'dropped']);
export type SampleStatus = z.infer<typeof sampleStatusSchema>;

export const sampleRecordSchema = z
  .object({
    id: count,
    /** Policy version the sample started under (staleness is measured from it). */
    startVersion: count,
    promptTokens: count,
    /** Real engines: the prompt's ids (promptTokens of them). Absent for simulated runs. */
    promptIds: z.array(count).optional(),
    turns: z.array(turnRecordSchema),
    partial: partialTurnSchema.optional(),
    status: sampleStatusSchema,
    /** The shard allowed to write this sample (fencing token). */
    owner: z.string().min(1).optional(),
    reward: z.number().optional(),
    dropReason: z.string().min(1).optional(),
    startedAtMs: count,
    completedAtMs: count.optional(),
    /** Iteration whose training batch contains this sample. */
    batch: count.optional(),
  })
  .superRefine((r, ctx) => {
    /** Ids, when present, must agree with the counts the rest of the system uses. */
    const sized = (ids: readonly unknown[] | undefined, expected: number, path: (string | number)[], what: string) => {
      if (ids !== undefined && ids.length !== expected) {
        ctx.addIssue({ code: 'custom', path, message: `${what}: ${ids.length} entries for ${expected} tokens` });
      }
    };
    /** Token versions cover the generated tokens exactly. */
    const spanned = (spans: readonly { version: number; tokens: number }[] | undefined, tokens: number, path: (string | number)[]) => {
      if (spans === undefined) return;
      const covered = spans.reduce((sum, span) => sum + span.tokens, 0);
      if (covered !== tokens) ctx.addIssue({ code: 'custom', path, message: `token versions cover ${covered} tokens of ${tokens}` });
    };
    sized(r.promptIds, r.promptTokens, ['promptIds'], 'promptIds');
    r.turns.forEach((t, i) => {
      if (t.turn !== i) {
        ctx.addIssue({ code: 'custom', path: ['turns', i, 'turn'], message: `turn ${i} is numbered ${t.turn}` });
      }
      sized(t.outputIds, t.generatedTokens, ['turns', i, 'outputIds'], 'outputIds');
      sized(t.logprobs, t.generatedTokens, ['turns', i, 'logprobs'], 'logprobs');
      sized(t.observationIds, t.observationTokens, ['turns', i, 'observationIds'], 'observationIds');
      spanned(t.tokenVersions, t.generatedTokens, ['turns', i, 'tokenVersions']);
    });
    if (r.partial !== undefined) {
      sized(r.partial.ids, r.partial.tokens, ['partial', 'ids'], 'partial ids');
      sized(r.partial.logprobs, r.partial.tokens, ['partial', 'logprobs'], 'partial logprobs');
      spanned(r.partial.tokenVersions, r.partial.tokens, ['partial', 'tokenVersions']);
    }
    if (r.partial !== undefined && r.partial.turn !== r.turns.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['partial', 'turn'],
        message: `partial turn must be the next turn (${r.turns.length}), got ${r.partial.turn}`,
      });
    }
    if (r.status === 'completed') {
      if (r.completedAtMs === undefined) ctx.addIssue({ code: 'custom', path: ['completedAtMs'], message: 'completed sample without completedAtMs' });
      if (r.reward === undefined) ctx.addIssue({ code: 'custom', path: ['reward'], message: 'completed sample without reward' });
      if (r.partial !== undefined) ctx.addIssue({ code: 'custom', path: ['partial'], message: 'completed sample with a partial turn' });
    }
    if (r.status === 'dropped' && r.dropReason === undefined) {
      ctx.addIssue({ code: 'custom', path: ['dropReason'], message: 'dropped sample without dropReason' });
    }
    if (r.status !== 'dropped' && r.dropReason !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['dropReason'], message: `${r.status} sample with dropReason` });
    }
    if (r.batch !== undefined && r.status !== 'completed') {
      ctx.addIssue({ code: 'custom', path: ['batch'], message: `${r.status} sample assigned to batch ${r.batch}` });
    }
  });
export type SampleRecord = z.infer<typeof sampleRecordSchema>;

/** Contents of `completed/<id>`: lets listCompleted find completions with a readdir. */
export const completedMarkerSchema = z.object({
  id: count,
  completedAtMs: count,
});
export type CompletedMarker = z.infer<typeof completedMarkerSchema>;

/** `batches/<iteration>.json`: the authoritative list of samples trained on in an iteration. */
export const batchManifestSchema = z.object({
  iteration: count,
  /** Weight version the batch trains from. */
  fromVersion: count,
  sampleIds: z.array(count).min(1),
  totalTokens: count,
  /** Σ over the samples of their totalTokens squared: the admission's KV cap estimates from it (absent in manifests written before). */
  totalTokensSquared: z.number().nonnegative().optional(),
  createdAtMs: count,
  /** Generated tokens of the batch by their version lag behind fromVersion (absent in manifests written before). */
  tokenLags: z.record(z.string().regex(/^\d+$/), count).optional(),
});
export type BatchManifest = z.infer<typeof batchManifestSchema>;

/**
 * Context length of the sample in tokens: prompt + generated + observations of every finished
 * turn + the partial turn's prefix. What an engine must prefill to resume the sample.
 */
export function contextTokens(record: SampleRecord): number {
  return totalTokens(record) + (record.partial?.tokens ?? 0);
}

/**
 * Tokens of the committed trajectory: prompt + generated + observations of every finished turn
 * (the partial turn is excluded: it is not part of the trajectory until the turn completes).
 * Equal to contextTokens for a completed sample. Batch manifests sum this.
 */
export function totalTokens(record: SampleRecord): number {
  let sum = record.promptTokens;
  for (const t of record.turns) sum += t.generatedTokens + t.observationTokens;
  return sum;
}

/**
 * The context's token ids (prompt, then each finished turn's output and observation), without
 * the partial prefix; undefined for a record without ids (simulated engines).
 */
export function contextIds(record: SampleRecord): number[] | undefined {
  if (record.promptIds === undefined) return undefined;
  const ids = [...record.promptIds];
  for (const t of record.turns) {
    if (t.outputIds === undefined || t.observationIds === undefined) {
      throw new Error(`sample ${record.id} has prompt ids but turn ${t.turn} lacks output or observation ids`);
    }
    ids.push(...t.outputIds, ...t.observationIds);
  }
  return ids;
}

/** The versions of a turn's (or partial turn's) generated tokens, as runs in order. */
export function turnVersionSpans(turn: { tokenVersions?: { version: number; tokens: number }[] | undefined; weightVersion: number; generatedTokens?: number; tokens?: number }): { version: number; tokens: number }[] {
  if (turn.tokenVersions !== undefined) return turn.tokenVersions.map((span) => ({ ...span }));
  const tokens = turn.generatedTokens ?? turn.tokens ?? 0;
  return tokens === 0 ? [] : [{ version: turn.weightVersion, tokens }];
}

/** A batch's context figures as its manifest records them: Σ and Σ² of its samples' total tokens (the KV cap's input). */
export function batchContextFigures(records: readonly SampleRecord[]): { totalTokens: number; totalTokensSquared: number } {
  const { tokens, squaredTokens } = contextSums(records.map(totalTokens));
  return { totalTokens: tokens, totalTokensSquared: squaredTokens };
}

/** The batch's generated tokens by version lag behind `fromVersion`, the version it trains from. */
export function batchTokenLags(records: readonly SampleRecord[], fromVersion: number): LagHistogram {
  let histogram: LagHistogram = {};
  for (const record of records) for (const t of record.turns) histogram = addTokenLags(histogram, turnVersionSpans(t), fromVersion);
  return histogram;
}

/** Tokens generated by the policy so far (finished turns plus the partial prefix). */
export function generatedTokens(record: SampleRecord): number {
  let sum = record.partial?.tokens ?? 0;
  for (const t of record.turns) sum += t.generatedTokens;
  return sum;
}

export interface CreateSamplesResult {
  /** Ids whose files this call created. */
  created: number[];
  /** Ids that already had a file (left untouched: a retry never resets progress). */
  existing: number[];
}

export interface AuditExpectations {
  /** Every admitted id must have a sample file. */
  admittedIds?: readonly number[];
  /**
   * End-of-run check: every sample (the admitted ones if given, else every sample on disk) must
   * be in exactly one batch or dropped.
   */
  requireSettled?: boolean;
}

export interface AuditReport {
  /** Sample files on disk (corrupt ones included). */
  samples: number;
  /** status === 'completed' (batched or not). */
  completed: number;
  running: number;
  /** Dropped samples per drop reason. */
  dropped: Record<string, number>;
  /** Samples whose record names a batch. */
  batched: number;
  /** Batch manifests on disk. */
  batches: number;
  /** Human-readable violations, each naming the sample id(s) and batch(es) involved. Empty = proof holds. */
  violations: string[];
}

// ---------------------------------------------------------------------------------------------
// Errors: each names the sample (or batch) and the file path.

export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export class SampleNotFoundError extends StoreError {
  constructor(
    readonly sampleId: number,
    readonly path: string,
  ) {
    super(`trajectory store: sample ${sampleId} not found (no file ${path})`);
  }
}

export class BatchNotFoundError extends StoreError {
  constructor(
    readonly iteration: number,
    readonly path: string,
  ) {
    super(`trajectory store: batch ${iteration} not found (no file ${path})`);
  }
}

/** A file exists but cannot be parsed or fails validation. `subject` is e.g. "sample 12" or "batch 3". */
export class StoreCorruptionError extends StoreError {
  constructor(
    readonly subject: string,
    readonly path: string,
    readonly detail: string,
    readonly sampleId?: number,
  ) {
    super(`trajectory store: ${subject} is corrupt (file ${path}): ${detail}`);
  }
}

/** A shard that does not own a sample tried to write it (e.g. a zombie shard after re-sharding). */
export class FencingError extends StoreError {
  constructor(
    readonly sampleId: number,
    readonly path: string,
    readonly shardId: string,
    readonly owner: string | undefined,
  ) {
    super(
      `trajectory store: shard ${JSON.stringify(shardId)} may not write sample ${sampleId} (file ${path}): ` +
        `owner is ${owner === undefined ? 'nobody' : JSON.stringify(owner)}`,
    );
  }
}

/** An operation is not allowed in the sample's current state (claim a completed sample, drop a batched one, ...). */
export class SampleStateError extends StoreError {
  constructor(
    readonly sampleId: number,
    readonly path: string,
    readonly operation: string,
    detail: string,
  ) {
    super(`trajectory store: cannot ${operation} sample ${sampleId} (file ${path}): ${detail}`);
  }
}

/** Exactly-once violation: a sample would end up in two batches, or a batch would change on retry. */
export class BatchConflictError extends StoreError {
  constructor(
    readonly iteration: number,
    readonly path: string,
    detail: string,
    readonly sampleId?: number,
    readonly otherIteration?: number,
  ) {
    super(`trajectory store: cannot seal batch ${iteration} (file ${path}): ${detail}`);
  }
}

/** A store lock could not be acquired in time. */
export class LockTimeoutError extends StoreError {
  constructor(
    readonly path: string,
    readonly waitedMs: number,
  ) {
    super(`trajectory store: lock ${path} not acquired after ${waitedMs} ms`);
  }
}

/** A caller passed a record or argument the store refuses to write (names the sample and its file). */
export class InvalidInputError extends StoreError {
  constructor(
    readonly subject: string,
    readonly path: string,
    detail: string,
  ) {
    super(`trajectory store: invalid ${subject} (file ${path}): ${detail}`);
  }
}

/** Parses a store file's text with its schema; StoreCorruptionError names the file and what is wrong. */
export function parseStoreFile<T>(
  schema: z.ZodType<T>,
  text: string,
  subject: string,
  path: string,
  sampleId?: number,
): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StoreCorruptionError(subject, path, `not valid JSON (${(err as Error).message})`, sampleId);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new StoreCorruptionError(subject, path, z.prettifyError(parsed.error).replace(/\n/g, '; '), sampleId);
  }
  return parsed.data;
}
