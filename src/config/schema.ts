/**
 * The run configuration file (YAML or JSON): its zod schema, with defaults.
 *
 * Every object is strict (an unknown key is an error, never silently ignored). Rules that need
 * more than one field (GPU ids inside the pool, the strategy rules, one endpoint per rollout
 * rank, maxConcurrentSamples >= batchSize) are checked after parsing, in ./load.ts, which also
 * turns every issue into a ConfigError naming the field path and the rule broken.
 *
 * Messages set here name the rule ("expected an integer in [1, 64]"); load.ts appends the
 * offending value and, for YAML files, the line.
 */
import { addressProblem } from './address';
import { z } from 'zod';
import { MAX_GPUS, STRATEGIES } from '../gpu/layout';
import { DEFAULT_STALENESS_POLICY, STALENESS_POLICIES } from '../gpu/staleness';
import { MAX_LIVE_SAMPLES } from '../gpu/ledger';
import { hardwareSchema } from '../engines/hardware';
import { collectiveBackendSchema, costModelSchema, faultSchema, weightSyncModeSchema, workloadSchema } from '../engines/types';
import type { OpenEnvEnvironmentConfig as EngineOpenEnvConfig } from '../engines/openenv/config';

// ---------------------------------------------------------------------------------------------
// Field helpers: one message per field that states the whole rule, whichever part of it failed.
// ---------------------------------------------------------------------------------------------

/** An integer in [min, max]; the message names the whole range. */
function intIn(min: number, max: number) {
  const rule = `expected an integer in [${min}, ${max}]`;
  return z.number({ error: rule }).int({ error: rule }).min(min, { error: rule }).max(max, { error: rule });
}

/** An integer >= min (safe-integer sized). */
function intAtLeast(min: number) {
  const rule = `expected an integer >= ${min}`;
  return z.number({ error: rule }).int({ error: rule }).min(min, { error: rule });
}

/** A finite number > 0 (and <= max when given). */
function positiveNumber(max?: number) {
  const rule = max === undefined ? 'expected a number > 0' : `expected a number in (0, ${max}]`;
  const base = z.number({ error: rule }).positive({ error: rule });
  return max === undefined ? base : base.max(max, { error: rule });
}

function nonEmptyString(what = 'a non-empty string') {
  const rule = `expected ${what}`;
  return z.string({ error: rule }).min(1, { error: rule });
}

const HTTP_URL_RULE = 'expected an http(s) URL';
const httpUrl = () => z.url({ protocol: /^https?$/, error: HTTP_URL_RULE });

/** Name of an environment variable holding an API key (the key itself never goes in the file). */
const envVarName = () =>
  z
    .string({ error: 'expected an environment variable name' })
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name matching [A-Za-z_][A-Za-z0-9_]*' });

/** TLS / mTLS to the Temporal front end: paths of PEM files, never their contents. */
export const temporalTlsSchema = z
  .object({
    /** CA certificate that signed the server's certificate (default: the system's roots). */
    caFile: nonEmptyString('a file path').optional(),
    /** Client certificate and its private key, for mTLS: both or neither. */
    certFile: nonEmptyString('a file path').optional(),
    keyFile: nonEmptyString('a file path').optional(),
    /** Name the server certificate must carry, when it differs from the address's host. */
    serverName: nonEmptyString('a host name').optional(),
  })
  .strict()
  .superRefine((tls, ctx) => {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'mTLS needs both certFile and keyFile (a client certificate and its private key)',
        path: [tls.certFile === undefined ? 'certFile' : 'keyFile'],
      });
    }
  });
export type TemporalTlsConfig = z.infer<typeof temporalTlsSchema>;

export const CODEC_KEY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The payload codec's key: from a file or an environment variable, exactly one. */
export const payloadCodecSchema = z
  .object({
    /** Written into every encrypted payload's metadata; readers must hold the key of that id. */
    keyId: z.string({ error: 'expected a key id' }).regex(CODEC_KEY_ID_PATTERN, { error: `expected a key id matching ${CODEC_KEY_ID_PATTERN.source}` }),
    keyFile: nonEmptyString('a file path').optional(),
    keyEnv: envVarName().optional(),
  })
  .strict()
  .superRefine((codec, ctx) => {
    if ((codec.keyFile === undefined) === (codec.keyEnv === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'expected exactly one of keyFile or keyEnv (where the 256-bit key is read from)', path: [] });
    }
  });
export type PayloadCodecConfig = z.infer<typeof payloadCodecSchema>;

export const RUN_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

// ---------------------------------------------------------------------------------------------
// GpuList: 'all' | [0, 1, 2] | "0-3,8,10-11"
// ---------------------------------------------------------------------------------------------

/** A parsed GPU list: 'all' (every GPU of the pool) or explicit ids, in the order given. */
export type GpuList = 'all' | number[];

const MAX_GPU_ID = MAX_GPUS - 1;
const GPU_LIST_FORMS = `expected "all", an array of GPU ids, or a range string like "0-3,8,10-11"`;
const GPU_ID_RULE = `expected a GPU id: an integer in [0, ${MAX_GPU_ID}]`;

/** Why a GPU range string is malformed, or its ids (duplicates are reported by the caller). */
export function parseGpuRanges(text: string): { ok: true; ids: number[] } | { ok: false; message: string } {
  if (text.trim() === '') return { ok: false, message: 'expected at least one GPU (the range string is empty)' };
  const ids: number[] = [];
  const parts = text.split(',');
  for (const [index, raw] of parts.entries()) {
    const part = raw.trim();
    const where = `item ${index + 1} of ${parts.length}`;
    if (part === '') {
      return { ok: false, message: `invalid GPU range string: ${where} is empty (expected ranges like "0-3,8,10-11")` };
    }
    const match = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(part);
    if (match === null) {
      return { ok: false, message: `invalid GPU range ${JSON.stringify(part)} (${where}): expected N or N-M with N, M GPU ids` };
    }
    const start = Number(match[1]);
    const end = match[2] === undefined ? start : Number(match[2]);
    if (start > MAX_GPU_ID || end > MAX_GPU_ID) {
      return { ok: false, message: `invalid GPU range ${JSON.stringify(part)} (${where}): GPU ids must be in [0, ${MAX_GPU_ID}]` };
    }
    if (start > end) {
      return { ok: false, message: `invalid GPU range ${JSON.stringify(part)} (${where}): start ${start} > end ${end}` };
    }
    for (let id = start; id <= end; id++) ids.push(id);
  }
  return { ok: true, ids };
}

function firstDuplicate(ids: readonly number[]): { id: number; index: number } | undefined {
  const seen = new Set<number>();
  for (const [index, id] of ids.entries()) {
    if (seen.has(id)) return { id, index };
    seen.add(id);
  }
  return undefined;
}

/** 'all' | array of GPU ids | range string, parsed strictly; output is 'all' or the ids as given. */
export const gpuListSchema = z.unknown().transform((value, ctx): GpuList => {
  if (value === 'all') return 'all';
  if (typeof value === 'string') {
    const parsed = parseGpuRanges(value);
    if (!parsed.ok) {
      ctx.issues.push({ code: 'custom', message: parsed.message, input: value });
      return z.NEVER;
    }
    const duplicate = firstDuplicate(parsed.ids);
    if (duplicate !== undefined) {
      ctx.issues.push({ code: 'custom', message: `GPU ${duplicate.id} is listed more than once`, input: value });
      return z.NEVER;
    }
    return parsed.ids;
  }
  if (Array.isArray(value)) {
    const items: unknown[] = value;
    if (items.length === 0) {
      ctx.issues.push({ code: 'custom', message: 'expected at least one GPU (the array is empty)', input: value });
      return z.NEVER;
    }
    const ids: number[] = [];
    const seen = new Set<number>();
    let failed = false;
    for (const [index, item] of items.entries()) {
      if (typeof item !== 'number' || !Number.isInteger(item) || item < 0 || item > MAX_GPU_ID) {
        ctx.issues.push({ code: 'custom', message: GPU_ID_RULE, input: item, path: [index] });
        failed = true;
        continue;
      }
      if (seen.has(item)) {
        ctx.issues.push({ code: 'custom', message: `GPU ${item} is listed more than once`, input: item, path: [index] });
        failed = true;
        continue;
      }
      seen.add(item);
      ids.push(item);
    }
    return failed ? z.NEVER : ids;
  }
  ctx.issues.push({ code: 'custom', message: GPU_LIST_FORMS, input: value });
  return z.NEVER;
});

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

const simulatedEngineSchema = z.object({ kind: z.literal('simulated') }).strict();

export const rolloutEngineSchema = z.discriminatedUnion('kind', [
  simulatedEngineSchema,
  z
    .object({
      kind: z.enum(['sglang', 'vllm']),
      /** One base URL per rollout rank, in rank order (the count is checked against the layout). */
      endpoints: z
        .array(httpUrl(), { error: 'expected an array of http(s) URLs, one per rollout rank' })
        .min(1, { error: 'expected at least one endpoint (one per rollout rank)' })
        .superRefine((urls, ctx) => {
          const seen = new Map<string, number>();
          for (const [index, url] of urls.entries()) {
            const first = seen.get(url);
            if (first !== undefined) {
              ctx.addIssue({
                code: 'custom',
                message: `duplicate endpoint (same as endpoints[${first}]): every rank needs its own engine`,
                input: url,
                path: [index],
              });
            } else {
              seen.set(url, index);
            }
          }
        }),
      apiKeyEnv: envVarName().optional(),
      /** vLLM: the served model name sent as `model` (required for vllm). */
      model: nonEmptyString('a served model name').optional(),
      /** Sampling of every generation call. */
      sampling: z
        .object({
          temperature: z.number({ error: 'expected a number >= 0' }).min(0, { error: 'expected a number >= 0' }).default(1),
          /** Cap on new tokens per agent turn (the trajectory budget maxTokens still applies). */
          maxNewTokensPerTurn: intAtLeast(1).optional(),
          /** Token ids that end a turn besides the model's EOS. */
          stopTokenIds: z.array(intAtLeast(0)).default([]),
          /** Generate past EOS (SGLang/vLLM `ignore_eos`): turns of exactly maxNewTokensPerTurn tokens. */
          ignoreEos: z.boolean({ error: 'expected true or false' }).default(false),
        })
        .strict()
        .prefault({}),
    })
    .strict(),
]);
export type RolloutEngineConfig = z.infer<typeof rolloutEngineSchema>;

export const trainerEngineSchema = z.discriminatedUnion('kind', [
  simulatedEngineSchema,
  z
    .object({
      kind: z.literal('http'),
      endpoint: httpUrl(),
      apiKeyEnv: envVarName().optional(),
    })
    .strict(),
]);
export type TrainerEngineConfig = z.infer<typeof trainerEngineSchema>;

/** One OpenEnv environment server: its URL, and optionally the command the gpu-node worker starts and supervises. */
const openEnvServerSchema = z
  .object({
    url: httpUrl(),
    /** argv of a process that serves at `url`; the gpu-node worker starts it and restarts it when it exits. */
    command: z.array(nonEmptyString()).min(1, { error: 'expected a command: a non-empty argv list' }).optional(),
    /** Working directory of `command` (relative to the worker's). */
    cwd: nonEmptyString('a directory path').optional(),
    /** The gpu-node whose worker runs `command`. */
    node: intAtLeast(0).default(0),
  })
  .strict();

/** How the model's text output becomes an OpenEnv action (src/engines/openenv/actions.ts). */
const toolCallSchema = z.discriminatedUnion('format', [
  /** The text holds a JSON object {"name": tool, "arguments": {...}}: OpenEnv's call_tool action. */
  z.object({ format: z.literal('json') }).strict(),
  /** The whole text is one argument of a fixed tool: call_tool(tool, {argument: text}). */
  z.object({ format: z.literal('text-argument'), tool: nonEmptyString('a tool name'), argument: nonEmptyString('an argument name') }).strict(),
  /** The whole text is one field of the environment's own action model: {field: text}. */
  z.object({ format: z.literal('text-field'), field: nonEmptyString('an action field name') }).strict(),
]);

/** An OpenEnv environment (reset/step over WebSocket sessions): src/engines/openenv/, docs/engine-protocol.md. */
export const openEnvEnvironmentSchema = z
  .object({
    kind: z.literal('openenv'),
    servers: z.array(openEnvServerSchema).min(1, { error: 'expected at least one environment server' }),
    /** Concurrent episodes (WebSocket sessions) per server and gpu-node worker; more samples wait for a free session. */
    sessionsPerServer: intIn(1, 100_000).default(64),
    timeouts: z
      .object({
        connectSeconds: positiveNumber(3600).default(10),
        resetSeconds: positiveNumber(3600).default(30),
        stepSeconds: positiveNumber(86_400).default(120),
        /** An episode no turn touched for this long is closed (its sample went to another worker). */
        idleSeconds: positiveNumber(86_400).default(900),
      })
      .strict()
      .prefault({}),
    /** Re-creations of a lost session per turn before the sample ends as environment-unavailable. */
    retries: intIn(0, 100).default(3),
    /** Environment variable holding the servers' API key (sent as a bearer token). */
    apiKeyEnv: envVarName().optional(),
    /** Episode seeds derive from it and the sample id: reset(seed) must give the same prompt every time. */
    seed: intAtLeast(0).default(1),
    /**
     * The environment is deterministic given its reset seed and the actions: a lost episode is
     * re-created and the recorded actions replayed. Otherwise a lost episode ends its sample (counted).
     */
    deterministic: z.boolean().default(false),
    toolCall: toolCallSchema.default({ format: 'json' }),
    /** Observation field rendered as the observation's text; default: the whole observation as JSON. */
    observationField: nonEmptyString('an observation field name').optional(),
    /**
     * The model's chat template for environment text: `{observation}` is replaced by the text.
     * `prompt` wraps the reset observation, `observation` each later one (they follow the generated ids).
     */
    chatTemplate: z
      .object({
        prompt: nonEmptyString('a template containing {observation}').default('{observation}'),
        observation: nonEmptyString('a template containing {observation}').default('{observation}'),
      })
      .strict()
      .prefault({}),
    /** Text ↔ ids: the rollout engine's own /tokenize and /detokenize, or a character-vocabulary file. */
    tokenizer: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('engine') }).strict(),
        z.object({ kind: z.literal('file'), path: nonEmptyString('a file path') }).strict(),
      ])
      .default({ kind: 'engine' }),
    /** The sample's reward: the sum of the step rewards, or the last step's. */
    reward: z.enum(['sum', 'last']).default('sum'),
    /** End the episode after this many steps when the environment has not (e.g. an echo server). */
    maxSteps: intIn(1, 100_000).optional(),
  })
  .strict()
  .refine((e) => e.chatTemplate.prompt.includes('{observation}') && e.chatTemplate.observation.includes('{observation}'), {
    message: 'each chat template must contain {observation}',
    path: ['chatTemplate'],
  });
export type OpenEnvEnvironmentConfig = z.infer<typeof openEnvEnvironmentSchema>;
/** Compile-time check: the schema produces exactly the settings the OpenEnv engine reads. */
const _openEnvConfigMatches: [OpenEnvEnvironmentConfig, EngineOpenEnvConfig] extends [EngineOpenEnvConfig, OpenEnvEnvironmentConfig] ? true : never = true;
void _openEnvConfigMatches;

/** The agent environment: simulated (token counts only), the digits task on token ids (src/engines/digits.ts) or an OpenEnv server. */
export const environmentSchema = z.discriminatedUnion('kind', [
  simulatedEngineSchema,
  openEnvEnvironmentSchema,
  z
    .object({
      kind: z.literal('digits'),
      /** The model's character vocabulary (token id i is vocabulary[i]); must contain the digits 0-9. */
      vocabulary: nonEmptyString('a character vocabulary').default('0123456789?'),
      turns: intIn(1, 1000).default(4),
      shift: intIn(0, 9).default(3),
      seed: intAtLeast(0).default(1),
    })
    .strict(),
]);
export type EnvironmentConfig = z.infer<typeof environmentSchema>;

/**
 * How new weights reach the rollout engines: `disk` (the trainer exports a file, every engine
 * loads it) or `broadcast` (a collective from the trainer's memory to every engine,
 * docs/engine-protocol.md "Weight sync"). Broadcast settings apply with mode broadcast only.
 */
export const weightSyncSchema = z
  .object({
    mode: weightSyncModeSchema.default('disk'),
    /** Collective backend: nccl between GPUs, gloo on CPU (the reference engine without CUDA). */
    backend: collectiveBackendSchema.default('nccl'),
    /** Bucket size: one broadcast per bucket of consecutive tensors (a bigger tensor goes alone). */
    bucketMiB: positiveNumber(65_536).default(512),
    /** One deadline for the whole collective: every member answering (after a restart), group formation, transfer. */
    timeoutSeconds: positiveNumber(86_400).default(600),
    /** Collectives tried (each in a new group) before the sync fails or falls back. */
    attempts: intIn(1, 20).default(3),
    /** After the last failed attempt: `disk` exports and loads from files; `none` fails the sync. */
    fallback: z.enum(['none', 'disk']).default('none'),
    /** Address the engines reach the trainer's group store at; default: the trainer endpoint's host. */
    masterAddress: nonEmptyString('a host name or IP address').optional(),
  })
  .strict();
export type WeightSyncConfig = z.infer<typeof weightSyncSchema>;

// ---------------------------------------------------------------------------------------------
// The run configuration
// ---------------------------------------------------------------------------------------------

export const DEFAULT_ITERATIONS = 3;
export const DEFAULT_TIME_SCALE = 0.01;

export const runConfigSchema = z
  .object({
    run: z
      .object({
        /** Run id (workflow ids derive from it); default: a slug of the config file's name. */
        id: z
          .string({ error: 'expected a run id string' })
          .regex(RUN_ID_PATTERN, { error: `expected a slug matching ${RUN_ID_PATTERN.source}` })
          .optional(),
        iterations: intAtLeast(1).default(DEFAULT_ITERATIONS),
      })
      .strict()
      .prefault({}),
    pool: z
      .object({
        nodes: intIn(1, 4096),
        gpusPerNode: intIn(1, 64),
      })
      .strict(),
    strategy: z.enum(STRATEGIES, { error: `expected one of ${STRATEGIES.map((s) => JSON.stringify(s)).join(' | ')}` }),
    rollout: z
      .object({
        gpus: gpuListSchema.default('all'),
        /** GPUs per rollout rank (TP × PP of one engine instance); ranks never span nodes. */
        gpusPerRank: intAtLeast(1).default(1),
        /** Live samples kept rolling at once; default batchSize × (1 + asyncRatio), at most MAX_LIVE_SAMPLES. */
        maxConcurrentSamples: intIn(1, MAX_LIVE_SAMPLES).optional(),
        /**
         * The most KV-cache tokens the 'resume' admission's KV cap counts per rank, and the value for
         * a rank whose engine reports none (the engines report theirs: SGLang `max_total_num_tokens`,
         * vLLM num_gpu_blocks × block_size; docs/design.md §5.2). Absent: the engines' reports alone.
         */
        kvCapacityTokensPerRank: intAtLeast(1).optional(),
        /** What becomes of samples that outlive their weight version (docs/design.md §5.2 "Staleness"). */
        staleness: z
          .object({
            /** 'resume': continue across syncs, nothing discarded for its age; 'drop': ROLL's rule (lag > asyncRatio dropped). */
            policy: z.enum(STALENESS_POLICIES, { error: `expected one of ${STALENESS_POLICIES.map((s) => JSON.stringify(s)).join(' | ')}` }).default(DEFAULT_STALENESS_POLICY),
            /** Hard limit: generated tokens lagging the trained version by more stay as context but leave the loss. */
            maxTokenLag: intIn(0, 1000).optional(),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    train: z
      .object({
        gpus: gpuListSchema,
      })
      .strict(),
    batchSize: intIn(1, 65_536),
    /** How many policy versions a sample may lag behind the trainer. */
    asyncRatio: intIn(0, 8).default(1),
    maxTurns: intIn(1, 1000).default(100),
    /** Token budget of one trajectory (context + generated). */
    maxTokens: intIn(1, 1_048_576).default(65_536),
    /**
     * A sample's age limit, not a per-call timeout: a sample admitted longer ago than this (wall
     * time with real engines, simulated time with simulated ones) is dropped as
     * `environment-timeout` before its next turn. The OpenEnv calls have their own timeouts.
     */
    environmentTimeoutSeconds: positiveNumber().default(3600),
    engine: z
      .object({
        rollout: rolloutEngineSchema.default({ kind: 'simulated' }),
        trainer: trainerEngineSchema.default({ kind: 'simulated' }),
        environment: environmentSchema.default({ kind: 'simulated' }),
        weightSync: weightSyncSchema.prefault({}),
      })
      .strict()
      .prefault({}),
    simulation: z
      .object({
        /** Real seconds per simulated second (0.01: 100× faster than real time). */
        timeScale: positiveNumber(1000).default(DEFAULT_TIME_SCALE),
        costModel: costModelSchema.prefault({}),
        /**
         * The model and GPUs (optional): the simulator then derives KV capacity, decode and prefill
         * costs, transfers and training rate from them (src/engines/simulated/roofline.ts) instead of the
         * cost model's assumed rates.
         */
        hardware: hardwareSchema.optional(),
        workload: workloadSchema.prefault({}),
        /** Declared engine faults (tests, fault injection): the first N calls of an operation fail. */
        faults: z.array(faultSchema).default([]),
        /**
         * Let the fault-injection harness (`timeshare chaos`) inject faults into the running
         * engines through files under the engine state folder (faults/pending). Off by default.
         */
        faultInjection: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    temporal: z
      .object({
        /** Absent: $TEMPORAL_ADDRESS, then localhost:7233 (src/cli/context.ts; a --address flag wins over all). */
        address: nonEmptyString('a host:port address')
          .superRefine((text, ctx) => {
            const problem = addressProblem(text);
            if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
          })
          .optional(),
        /** Absent: $TEMPORAL_NAMESPACE, then default. */
        namespace: nonEmptyString().optional(),
        taskQueuePrefix: z
          .string({ error: 'expected a task queue prefix' })
          .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, {
            error: 'expected a task queue prefix matching [A-Za-z0-9][A-Za-z0-9._-]{0,99}',
          })
          .default('timeshare'),
        /**
         * TLS to the Temporal front end: file paths only (the files are read and checked at
         * connect time). `{}` means TLS with the system's root certificates.
         */
        tls: temporalTlsSchema.optional(),
        /** Environment variable holding the Temporal API key (sent as a bearer token; implies TLS). */
        apiKeyEnv: envVarName().optional(),
        /** Encrypt workflow payloads (AES-256-GCM) so the server's history holds ciphertext. */
        codec: payloadCodecSchema.optional(),
        /**
         * A rollout shard, engine call or batch watcher that has not heartbeated for this long is
         * considered dead (its worker crashed) and is retried elsewhere on its queue.
         */
        heartbeatTimeoutSeconds: positiveNumber(3600).default(15),
        /**
         * A rank (or trainer) activity no worker picks up for this long means its gpu-node worker is
         * gone: its ranks are marked lost and the pool goes on without them (docs/design.md §3.2).
         * Longer than a worker restart takes; the default leaves 5 minutes.
         */
        lostNodeTimeoutSeconds: positiveNumber(86_400).default(300),
        /** Retries of a failing activity before its transition is rolled back and the iteration retried. */
        activityRetry: z
          .object({
            initialIntervalSeconds: positiveNumber(600).default(1),
            maximumAttempts: intIn(1, 100).default(5),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    store: z
      .object({
        /** Trajectory store directory (relative paths resolve against the working directory). */
        dir: nonEmptyString('a directory path').default('.timeshare/store'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** The run configuration as parsed: defaults applied, GPU lists not yet resolved against the pool. */
export type RunConfig = z.infer<typeof runConfigSchema>;
/** What a config file may contain (defaults optional). */
export type RunConfigInput = z.input<typeof runConfigSchema>;
