/**
 * RolloutEngine over SGLang's native HTTP API (matched against SGLang 0.5.x:
 * srt/entrypoints/http_server.py and srt/managers/io_struct.py).
 *
 *   generate        POST /generate {input_ids, sampling_params, return_logprob, rid}
 *   abort           POST /abort_request {rid} | {abort_all: true}; the aborted /generate answers
 *                   with finish_reason.type "abort" and the tokens generated so far (an abort
 *                   for a request not yet registered is ignored: sent again until it answers)
 *   release/resume  POST /release_memory_occupation, /resume_memory_occupation {tags}
 *   weights         POST /update_weights_from_disk {model_path, weight_version}, or by broadcast
 *                   (./broadcast.ts: init_weights_update_group, update_weights_from_distributed)
 *   status          GET /model_info (weight_version; the reference engine adds resident tags)
 *   KV capacity     GET /server_info → max_total_num_tokens (the scheduler's token pool; older
 *                   releases serve the same answer at /get_server_info, now deprecated)
 *
 * SGLang does not report which memory tags are resident: the adapter records what its own
 * successful release/resume calls did, unless the engine reports `resident_memory_tags`.
 */
import { z } from 'zod';
import { ALL_MEMORY_TAGS, type EngineStatus, type MemoryTag, type RolloutEngine, type TurnRequest, type TurnResult } from '../types';
import { SglangWeightReceiver } from './broadcast';
import { describe, HttpClient, parseVersion, unlessNotServed, WEIGHT_RELOAD_TIMEOUT_MS } from './client';
import { EngineHttpError, EngineProtocolError } from './errors';
import type { RolloutAdapterOptions, SamplingOptions } from './sampling';

const generateResponseSchema = z.object({
  output_ids: z.array(z.number().int().nonnegative()).optional(),
  meta_info: z
    .object({
      id: z.string(),
      finish_reason: z.object({ type: z.enum(['stop', 'length', 'abort']) }).loose(),
      completion_tokens: z.number().int().nonnegative(),
      // [logprob, token id, token text or null] per generated token. Absent when SGLang aborts a
      // request still in its queue (finish 'abort', 0 completion tokens): checked below.
      output_token_logprobs: z.array(z.tuple([z.number(), z.number().int().nonnegative(), z.unknown()])).optional(),
      weight_version: z.union([z.string(), z.number()]).optional(),
    })
    .loose(),
});

const modelInfoSchema = z
  .object({
    weight_version: z.union([z.string(), z.number()]),
    resident_memory_tags: z.array(z.enum(['weights', 'kv_cache'])).optional(),
  })
  .loose();

// The server's arguments and the scheduler's info merged into one object: only the token pool is read.
const serverInfoSchema = z.object({ max_total_num_tokens: z.number().int().positive().nullable().optional(), dp_size: z.number().int().positive().optional() }).loose();

const updateWeightsSchema = z.object({ success: z.boolean(), message: z.string() }).loose();

/** An abort is sent again after this long while its /generate has not answered, then at doubling intervals up to the maximum. */
const ABORT_RESEND_FIRST_MS = 50;
const ABORT_RESEND_MAX_MS = 1000;
/** A live SGLang answers an aborted /generate within a scheduler step: one that does not in this long is stuck. */
export const ABORT_ANSWER_TIMEOUT_MS = 30_000;

export class SglangRolloutEngine implements RolloutEngine {
  private readonly http: HttpClient;
  private readonly sampling: SamplingOptions;
  private readonly resident = new Set<MemoryTag>(ALL_MEMORY_TAGS);
  /** Whether `resident` is what this adapter's own calls made it (false: assumed, before any). */
  private residencyKnown = false;
  private readonly running = new Set<string>();
  private servedVersion: number;
  private readonly abortAnswerTimeoutMs: number;
  readonly broadcast: SglangWeightReceiver;

  constructor(options: RolloutAdapterOptions) {
    this.http = new HttpClient({ baseUrl: options.baseUrl, ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }) });
    this.sampling = options.sampling;
    this.servedVersion = options.initialVersion ?? 0;
    this.abortAnswerTimeoutMs = options.abortAnswerTimeoutMs ?? ABORT_ANSWER_TIMEOUT_MS;
    this.broadcast = new SglangWeightReceiver(this.http, (version) => (this.servedVersion = version));
  }

  async generate(request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> {
    const endpoint = this.http.endpoint('POST', '/generate');
    if (request.inputIds === undefined) {
      throw new EngineProtocolError(endpoint, `request ${request.requestId} has no input ids: SGLang generates from token ids (use an environment that produces ids)`);
    }
    if (signal?.aborted === true) return aborted(request.requestId, this.servedVersion);
    const rid = request.requestId;
    // The abort is SGLang's to answer (with the tokens generated so far); an engine that never
    // answers (hung, or a half-open connection) must not hold the stop forever.
    const unanswered = new AbortController();
    let giveUp: NodeJS.Timeout | undefined;
    const onAbort = () => {
      void this.abortUntilAnswered(rid);
      giveUp = setTimeout(() => unanswered.abort(), this.abortAnswerTimeoutMs);
    };
    this.running.add(rid);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const payload = {
        input_ids: [...request.inputIds, ...(request.prefixIds ?? [])],
        sampling_params: {
          max_new_tokens: request.maxNewTokens,
          temperature: this.sampling.temperature,
          stop_token_ids: [...this.sampling.stopTokenIds],
          ignore_eos: this.sampling.ignoreEos ?? false,
        },
        return_logprob: true,
        rid,
      };
      // No time limit: a long generation ends by finishing or by an abort.
      const answer = this.http.json('POST', '/generate', payload, generateResponseSchema, { timeoutMs: null, signal: unanswered.signal });
      const body = await this.answerOf(unanswered.signal, endpoint, rid, answer);
      const meta = body.meta_info;
      if (meta.id !== rid) throw new EngineProtocolError(endpoint, `answered request ${meta.id} to request ${rid}`);
      if (meta.output_token_logprobs === undefined && !(meta.finish_reason.type === 'abort' && meta.completion_tokens === 0)) {
        throw new EngineProtocolError(endpoint, `request ${rid}: no output_token_logprobs for ${meta.completion_tokens} tokens (finish ${meta.finish_reason.type})`);
      }
      const tokenLogprobs = meta.output_token_logprobs ?? [];
      const outputIds = tokenLogprobs.map(([, id]) => id);
      const logprobs = tokenLogprobs.map(([lp]) => lp);
      if (meta.completion_tokens !== outputIds.length || (body.output_ids !== undefined && body.output_ids.join() !== outputIds.join())) {
        throw new EngineProtocolError(endpoint, `request ${rid}: completion_tokens ${meta.completion_tokens}, ${outputIds.length} logprobs and output_ids disagree`);
      }
      const weightVersion = meta.weight_version === undefined ? this.servedVersion : parseVersion(endpoint, meta.weight_version);
      return { requestId: rid, outputTokens: outputIds.length, outputIds, logprobs, finishReason: meta.finish_reason.type, weightVersion };
    } finally {
      clearTimeout(giveUp);
      signal?.removeEventListener('abort', onAbort);
      this.running.delete(rid);
    }
  }

  /** The /generate's answer, or, if it was given up on after its abort, an error that says so. */
  private async answerOf<T>(unanswered: AbortSignal, endpoint: string, rid: string, answer: Promise<T>): Promise<T> {
    try {
      return await answer;
    } catch (error) {
      if (!unanswered.aborted) throw error;
      throw new EngineHttpError(
        endpoint,
        undefined,
        `no answer to request ${rid} within ${this.abortAnswerTimeoutMs} ms of its abort: the engine is unresponsive (the turn resumes from its sample's last checkpoint)`,
      );
    }
  }

  /**
   * SGLang ignores an abort for a request it has not registered yet (the /generate may still be on
   * its way, or in the tokenizer), and that turn would then run to its end. So the abort is sent
   * again, at growing intervals, until the /generate answers.
   */
  private async abortUntilAnswered(rid: string): Promise<void> {
    let waitMs = ABORT_RESEND_FIRST_MS;
    let warned = false;
    while (this.running.has(rid)) {
      // If the request already finished there is nothing to abort and its /generate answer stands;
      // if the engine is unreachable, the pending /generate fails too and carries the error. So the
      // abort's own failure is reported (once), not thrown: it runs from an abort listener.
      await this.http.call('POST', '/abort_request', { rid }).catch((error: unknown) => {
        if (!warned) console.warn(`sglang adapter: abort of request ${rid} failed: ${describe(error)}`);
        warned = true;
      });
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      waitMs = Math.min(2 * waitMs, ABORT_RESEND_MAX_MS);
    }
  }

  async abortAll(): Promise<void> {
    await this.http.call('POST', '/abort_request', { rid: '', abort_all: true });
  }

  /**
   * Releases the tags this adapter knows resident (all of them until its first release or resume
   * has told it: a worker restarted beside a running server cannot ask SGLang). SGLang's scheduler
   * dies on a release or resume of a tag already in that state (KeyError, SIGQUIT), and a retried
   * activity repeats its calls on the ranks that had succeeded: a known state is not asked again.
   */
  async releaseMemory(tags: readonly MemoryTag[]): Promise<void> {
    const asked = this.residencyKnown ? tags.filter((tag) => this.resident.has(tag)) : [...tags];
    if (asked.length > 0) await this.http.call('POST', '/release_memory_occupation', { tags: asked });
    for (const tag of tags) this.resident.delete(tag);
    this.residencyKnown = true;
  }

  /** Resumes the tags this adapter knows released (every asked tag until it knows; see releaseMemory). */
  async resumeMemory(tags: readonly MemoryTag[]): Promise<void> {
    const asked = this.residencyKnown ? tags.filter((tag) => !this.resident.has(tag)) : [...tags];
    if (asked.length > 0) await this.http.call('POST', '/resume_memory_occupation', { tags: asked });
    for (const tag of tags) this.resident.add(tag);
    this.residencyKnown = true;
  }

  async updateWeights(version: number, path: string): Promise<void> {
    const endpoint = this.http.endpoint('POST', '/update_weights_from_disk');
    const body = await this.http.json('POST', '/update_weights_from_disk', { model_path: path, weight_version: String(version), abort_all_requests: false }, updateWeightsSchema, {
      timeoutMs: WEIGHT_RELOAD_TIMEOUT_MS,
    });
    if (!body.success) throw new EngineProtocolError(endpoint, `update to v${version} from ${path} failed: ${this.http.redact(String(body.message))}`);
    this.servedVersion = version;
  }

  async status(): Promise<EngineStatus> {
    const endpoint = this.http.endpoint('GET', '/model_info');
    const info = await this.http.json('GET', '/model_info', undefined, modelInfoSchema);
    const weightVersion = parseVersion(endpoint, info.weight_version);
    this.servedVersion = weightVersion;
    if (info.resident_memory_tags !== undefined) {
      // An engine that reports its tags (the reference engine) is believed over this adapter's record.
      this.resident.clear();
      for (const tag of info.resident_memory_tags) this.resident.add(tag);
      this.residencyKnown = true;
    }
    const resident = ALL_MEMORY_TAGS.filter((tag) => this.resident.has(tag));
    return { weightVersion, resident, runningRequests: this.running.size };
  }

  /**
   * `max_total_num_tokens` of GET /server_info: the tokens one scheduler's KV pool holds, times
   * `dp_size` (the server reports its first data-parallel scheduler's pool and assumes all alike).
   * Absent, null or no such endpoint (HTTP 404): none reported.
   */
  async kvCapacityTokens(): Promise<number | undefined> {
    const info = await unlessNotServed(this.http.json('GET', '/server_info', undefined, serverInfoSchema));
    if (info?.max_total_num_tokens === null || info?.max_total_num_tokens === undefined) return undefined;
    return info.max_total_num_tokens * (info.dp_size ?? 1);
  }

  /** SGLang's pause/continue/flush (used around weight updates by callers that need them). */
  async pauseGeneration(mode: 'abort' | 'retract' | 'in_place'): Promise<void> {
    await this.http.call('POST', '/pause_generation', { mode });
  }

  async continueGeneration(): Promise<void> {
    await this.http.call('POST', '/continue_generation', {});
  }

  async flushCache(): Promise<void> {
    await this.http.call('POST', '/flush_cache', {});
  }

  async health(): Promise<void> {
    await this.http.call('GET', '/health');
  }
}

function aborted(requestId: string, weightVersion: number): TurnResult {
  return { requestId, outputTokens: 0, outputIds: [], logprobs: [], finishReason: 'abort', weightVersion };
}
