/**
 * RolloutEngine over vLLM's OpenAI-compatible server plus its RL endpoints (matched against
 * vLLM 0.11+ / main: entrypoints/openai serving_completion, serve/dev/rlhf and sleep routers;
 * the dev endpoints need VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode).
 *
 *   generate        POST /v1/completions {prompt: ids, max_tokens, logprobs: 0,
 *                   return_tokens_as_token_ids: true, stream: true, request_id}
 *                   tokens arrive as SSE events ("token_id:<id>" + token_logprobs); an abort
 *                   closes the stream (vLLM aborts a request whose client disconnects) and
 *                   keeps the tokens received so far
 *   abortAll        POST /abort_requests {} (no ids: every in-flight request)
 *   release/resume  POST /sleep?level=1 (weights and KV cache together), /wake_up?tags=...
 *   weights         POST /collective_rpc {method: reload_weights, kwargs: {weights_path}}, POST /reset_prefix_cache, then
 *                   POST /update_weight_version {new_version}; or by broadcast (./broadcast.ts:
 *                   init_weight_transfer_engine, start/update/finish_weight_update)
 *   status          GET /weight_info (also before each turn: a completion does not name its
 *                   weights), GET /is_sleeping
 *   KV capacity     GET /metrics → vllm:cache_config_info{num_gpu_blocks, block_size}: blocks × block size
 */
import { z } from 'zod';
import { ALL_MEMORY_TAGS, type EngineStatus, type MemoryTag, type RolloutEngine, type TurnRequest, type TurnResult } from '../types';
import { VllmWeightReceiver } from './broadcast';
import { describe, HttpClient, parseJson, parseVersion, unlessNotServed, WEIGHT_RELOAD_TIMEOUT_MS } from './client';
import { EngineHttpError, EngineProtocolError } from './errors';
import type { RolloutAdapterOptions, SamplingOptions } from './sampling';

const chunkSchema = z.object({
  choices: z
    .array(
      z
        .object({
          finish_reason: z.string().nullable().optional(),
          logprobs: z
            .object({ tokens: z.array(z.string()), token_logprobs: z.array(z.number().nullable()) })
            .loose()
            .nullable()
            .optional(),
        })
        .loose(),
    ),
  // A server started with --enable-force-include-usage ends with a usage chunk of no choices.
});

const errorEventSchema = z.object({ error: z.object({ message: z.string() }).loose() });
/** vLLM's sampling options other than temperature, off (see generate). */
const NEUTRAL_SAMPLING = { top_p: 1, top_k: -1, min_p: 0, repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0 } as const;
/** What vLLM's /weight_info answers before any version is set (a fresh or restarted server). */
const BASE_WEIGHT_VERSION = 'default';

export interface VllmAdapterOptions extends RolloutAdapterOptions {
  /** The served model name (`model` of the completions request). */
  model: string;
}

export class VllmRolloutEngine implements RolloutEngine {
  private readonly http: HttpClient;
  private readonly sampling: SamplingOptions;
  private readonly model: string;
  private readonly resident = new Set<MemoryTag>(ALL_MEMORY_TAGS);
  private readonly running = new Set<string>();
  private engineStateRead: Promise<void> | undefined;

  constructor(options: VllmAdapterOptions) {
    this.http = new HttpClient({ baseUrl: options.baseUrl, ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }) });
    this.sampling = options.sampling;
    this.model = options.model;
    this.broadcast = new VllmWeightReceiver(this.http);
  }

  readonly broadcast: VllmWeightReceiver;

  async generate(request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> {
    const endpoint = this.http.endpoint('POST', '/v1/completions');
    if (request.inputIds === undefined) {
      throw new EngineProtocolError(endpoint, `request ${request.requestId} has no input ids: the adapter sends token ids as the prompt`);
    }
    await this.readEngineStateOnce();
    const rid = request.requestId;
    const version = await this.servedVersion();
    const outputIds: number[] = [];
    const logprobs: number[] = [];
    const result = (finishReason: TurnResult['finishReason']): TurnResult => ({
      requestId: rid,
      outputTokens: outputIds.length,
      outputIds: [...outputIds],
      logprobs: [...logprobs],
      finishReason,
      weightVersion: version,
    });
    const isAborted = (): boolean => signal?.aborted === true;
    if (isAborted()) return result('abort');
    this.running.add(rid);
    try {
      let response: Response;
      try {
        response = await this.http.send(
          'POST',
          '/v1/completions',
          {
            model: this.model,
            prompt: [...request.inputIds, ...(request.prefixIds ?? [])],
            max_tokens: request.maxNewTokens,
            temperature: this.sampling.temperature,
            // The rest of the sampling stated as off: vLLM fills what a request omits from the
            // model's generation_config.json, and the trainer takes these logprobs as the ones
            // the tokens were sampled with (top_k -1 is off in every vLLM version; 0.34 takes 0 too).
            ...NEUTRAL_SAMPLING,
            stop_token_ids: [...this.sampling.stopTokenIds],
            ignore_eos: this.sampling.ignoreEos ?? false,
            logprobs: 0,
            return_tokens_as_token_ids: true,
            stream: true,
            request_id: rid,
          },
          { ...(signal === undefined ? {} : { signal }), timeoutMs: null },
        );
      } catch (error) {
        if (isAborted()) return result('abort');
        throw error;
      }
      if (response.body === null) throw new EngineProtocolError(endpoint, 'streaming response without a body');
      let finish: string | undefined;
      try {
        for await (const data of sseEvents(response.body)) {
          if (data === '[DONE]') break;
          const error = errorEventSchema.safeParse(safeJson(data));
          // An error inside the stream is the engine failing this request (overload, restart): retryable.
          if (error.success) throw new EngineHttpError(endpoint, response.status, `request ${rid} failed in the stream: ${this.http.redact(error.data.error.message)}`);
          const chunk = parseJson(endpoint, data, chunkSchema);
          const choice = chunk.choices[0];
          if (choice === undefined) continue;
          const lp = choice.logprobs;
          if (lp !== null && lp !== undefined) {
            if (lp.tokens.length !== lp.token_logprobs.length) throw new EngineProtocolError(endpoint, `request ${rid}: ${lp.tokens.length} tokens with ${lp.token_logprobs.length} logprobs`);
            lp.tokens.forEach((token, i) => {
              outputIds.push(tokenId(endpoint, token));
              const value = lp.token_logprobs[i];
              if (value === null || value === undefined) throw new EngineProtocolError(endpoint, `request ${rid}: token ${token} without a logprob`);
              logprobs.push(value);
            });
          }
          if (choice.finish_reason !== null && choice.finish_reason !== undefined) finish = choice.finish_reason;
        }
      } catch (error) {
        // The stream was cut by our abort: what arrived is the partial output.
        if (isAborted()) return result('abort');
        if (error instanceof EngineHttpError || error instanceof EngineProtocolError) throw error;
        // The connection broke off mid-stream (the engine crashed or restarted): no whole answer.
        throw new EngineHttpError(endpoint, response.status, `request ${rid}: the stream broke off: ${this.http.redact(describe(error))}`);
      }
      if (isAborted() && finish === undefined) return result('abort');
      if (finish === 'stop' || finish === 'length' || finish === 'abort') return result(finish);
      // A stream that ends without a finish reason was cut (engine crash or restart): retryable.
      if (finish === undefined) throw new EngineHttpError(endpoint, response.status, `request ${rid}: the stream ended without a finish reason`);
      throw new EngineProtocolError(endpoint, `request ${rid}: stream ended with finish_reason ${JSON.stringify(finish)}`);
    } finally {
      this.running.delete(rid);
    }
  }

  async abortAll(): Promise<void> {
    await this.http.call('POST', '/abort_requests', {});
  }

  async releaseMemory(tags: readonly MemoryTag[]): Promise<void> {
    const endpoint = this.http.endpoint('POST', '/sleep');
    if (!ALL_MEMORY_TAGS.every((tag) => tags.includes(tag))) {
      throw new EngineProtocolError(endpoint, `vLLM sleeps weights and KV cache together; cannot release only ${tags.join('+')}`);
    }
    await this.readEngineStateOnce();
    await this.http.call('POST', '/sleep?level=1');
    this.resident.clear();
  }

  /**
   * Wakes the asked tags that are asleep: vLLM wakes nothing (and answers 200) when any tag it is
   * asked for is awake already, so a resume of both after the weights alone asks for the KV cache only.
   */
  async resumeMemory(tags: readonly MemoryTag[]): Promise<void> {
    await this.readEngineStateOnce();
    const asleep = tags.filter((tag) => !this.resident.has(tag));
    if (asleep.length === 0) return;
    const query = asleep.map((tag) => `tags=${encodeURIComponent(tag)}`).join('&');
    await this.http.call('POST', `/wake_up?${query}`);
    for (const tag of asleep) this.resident.add(tag);
  }

  async updateWeights(version: number, path: string): Promise<void> {
    await this.http.call('POST', '/collective_rpc', { method: 'reload_weights', kwargs: { weights_path: path } }, { timeoutMs: WEIGHT_RELOAD_TIMEOUT_MS });
    // vLLM keeps its prefix cache across a reload: KV computed by the old weights must not serve the new ones.
    await this.http.call('POST', '/reset_prefix_cache');
    await this.http.call('POST', '/update_weight_version', { new_version: String(version) });
  }

  async status(): Promise<EngineStatus> {
    const state = await this.engineState();
    // A first call takes this read as the adapter's starting record instead of reading twice.
    if (this.engineStateRead === undefined) {
      this.adoptSleepState(state.sleeping);
      this.engineStateRead = Promise.resolve();
    } else await this.engineStateRead;
    const { weightVersion, sleeping } = state;
    // vLLM reports only whether it sleeps; which tags a partial wake_up restored is our record.
    const resident = ALL_MEMORY_TAGS.filter((tag) => this.resident.has(tag));
    const contradiction = sleeping ? resident.length === ALL_MEMORY_TAGS.length : resident.length === 0;
    if (contradiction) {
      throw new EngineProtocolError(
        this.http.endpoint('GET', '/is_sleeping'),
        `is_sleeping ${sleeping} contradicts the memory this adapter released/resumed (${resident.join('+') || 'none'} resident)`,
      );
    }
    return { weightVersion, resident, runningRequests: this.running.size };
  }

  private async engineState(): Promise<{ weightVersion: number; sleeping: boolean }> {
    return { weightVersion: await this.servedVersion(), sleeping: await this.isSleeping() };
  }

  private async isSleeping(): Promise<boolean> {
    return (await this.http.json('GET', '/is_sleeping', undefined, z.object({ is_sleeping: z.boolean() }).loose())).is_sleeping;
  }

  /**
   * A turn's label: vLLM's completions do not name the weights that generated them (SGLang's do),
   * and a server restarted behind the adapter serves its base weights, so the version is read from
   * the engine before each turn. Reading it once per turn is enough: a restart between the read and
   * the request would need a new server up, model loaded, within that gap; one during the request
   * cuts its stream (an error, not a labelled turn).
   */
  private async servedVersion(): Promise<number> {
    const info = await this.http.json('GET', '/weight_info', undefined, z.object({ weight_version: z.union([z.string(), z.number()]) }).loose());
    // A server answers "default" until a version is set: the weights it started with, the run's v0.
    if (info.weight_version === BASE_WEIGHT_VERSION) return 0;
    return parseVersion(this.http.endpoint('GET', '/weight_info'), info.weight_version);
  }

  /**
   * The engine outlives this adapter (a gpu-node worker restarts, the server keeps running): before
   * its first call the adapter takes the sleep state from the engine rather than assume everything
   * resident. A partial wake (weights only) reads as asleep, so every tag counts as released. A
   * failed read is retried by the next call.
   */
  private readEngineStateOnce(): Promise<void> {
    this.engineStateRead ??= this.isSleeping().then(
      (sleeping) => this.adoptSleepState(sleeping),
      (error: unknown) => {
        this.engineStateRead = undefined;
        throw error;
      },
    );
    return this.engineStateRead;
  }

  private adoptSleepState(sleeping: boolean): void {
    this.resident.clear();
    if (!sleeping) for (const tag of ALL_MEMORY_TAGS) this.resident.add(tag);
  }

  /**
   * The KV cache's tokens from the Prometheus info gauge `vllm:cache_config_info`, whose labels are
   * the engine's cache config: `num_gpu_blocks × block_size`, summed over its series (one per engine
   * core of the server). Undefined when /metrics is not served (HTTP 404), the gauge is absent or
   * `num_gpu_blocks` is not known yet ("None"); a label that is not a positive integer is a
   * protocol error.
   */
  async kvCapacityTokens(): Promise<number | undefined> {
    const endpoint = this.http.endpoint('GET', '/metrics');
    // No metrics endpoint (a proxy in front that does not expose it): none reported.
    const response = await unlessNotServed(this.http.send('GET', '/metrics', undefined));
    if (response === undefined) return undefined;
    const series = infoSeries(await response.text(), 'vllm:cache_config_info');
    let tokens = 0;
    for (const labels of series) {
      const blocks = labels.get('num_gpu_blocks');
      if (blocks === undefined || blocks === 'None') return undefined;
      tokens += positiveLabel(endpoint, labels, 'num_gpu_blocks') * positiveLabel(endpoint, labels, 'block_size');
    }
    return series.length === 0 ? undefined : tokens;
  }

  async pause(): Promise<void> {
    await this.http.call('POST', '/pause?mode=abort');
  }

  async resume(): Promise<void> {
    await this.http.call('POST', '/resume');
  }
}

/** The label sets of every sample of `metric` in a Prometheus text exposition. */
export function infoSeries(text: string, metric: string): Map<string, string>[] {
  const series: Map<string, string>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const close = line.lastIndexOf('}');
    const labels = new Map<string, string>();
    // name="value" pairs; values escape \\, \" and \n (Prometheus text format).
    for (const match of line.slice(metric.length + 1, close).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels.set(match[1]!, match[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c)));
    }
    series.push(labels);
  }
  return series;
}

function positiveLabel(endpoint: string, labels: ReadonlyMap<string, string>, name: string): number {
  const value = labels.get(name);
  if (value === undefined || !/^[1-9]\d*$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new EngineProtocolError(endpoint, `vllm:cache_config_info label ${name} = ${JSON.stringify(value ?? null)} is not a positive integer`);
  }
  return Number(value);
}

function tokenId(endpoint: string, token: string): number {
  const match = /^token_id:(\d+)$/.exec(token);
  if (match === null) throw new EngineProtocolError(endpoint, `token ${JSON.stringify(token)} is not "token_id:<id>" (send return_tokens_as_token_ids)`);
  return Number(match[1]);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The `data:` payloads of a server-sent-event stream. */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      if (data !== '') yield data;
    }
  }
}
