/**
 * A simulated inference engine for one rollout rank (one SGLang / vLLM instance over the rank's
 * GPUs): generation timed by the cost model, a per-sample prefix cache, GPU memory held in the
 * process's SimGpuMemory ledger, weight updates from files the trainer exports, and aborts that
 * return partial output.
 *
 * Wrong orders fail loudly (EngineStateError): generating while memory is released or a
 * transition is running, releasing memory or updating weights under running requests, loading a
 * lower weight version. Memory conflicts fail as SimulatedOutOfMemoryError.
 *
 * With `statePath`, {weightVersion, resident} is persisted on every change and read back at
 * construction: this models an engine process that survives a crash of the worker driving it,
 * so after a worker restart a repeated release is still a no-op.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { GpuId, RankId } from '../../gpu/layout';
import { checkIntRange, checkNoDuplicates, checkNonEmpty } from '../../validation/patterns';
import {
  ALL_MEMORY_TAGS,
  memoryTagSchema,
  type CostModel,
  type EngineStatus,
  type MemoryTag,
  type RolloutEngine,
  type TurnRequest,
  type TurnResult,
  type WeightReceiver,
} from '../types';
import { SimWeightReceiver } from './broadcast';
import type { SimClock } from './clock';
import { memoryTagShareMs, prefillMs } from './costFunctions';
import { DecodeScheduler } from './decodeScheduler';
import { EngineStateError } from './errors';
import type { SimGpuMemory } from './gpuMemory';
import { readStateFile, writeJsonAtomic } from './persistentState';
import { TransitionGate } from './transitionGate';
import type { WorkloadModel } from './workload';

/** Releases free KV cache before weights; resumes load weights before KV cache (vLLM's advised wake-up order). */
const RELEASE_ORDER: readonly MemoryTag[] = ['kv_cache', 'weights'];
const RESUME_ORDER: readonly MemoryTag[] = ['weights', 'kv_cache'];

const engineStateSchema = z
  .object({
    weightVersion: z.number().int().nonnegative(),
    resident: z.array(memoryTagSchema),
    /** The weight-update group the engine joined (broadcast sync). */
    weightGroup: z.string().optional(),
  })
  .strict();
type EngineState = z.infer<typeof engineStateSchema>;

/** What a weights file exported by the trainer must say (other fields are allowed). */
const weightsFileSchema = z.object({ version: z.number().int().nonnegative() });

/** How one generate call was timed: the engine's computed durations, for metrics and tests. */
export interface SimTurnTiming {
  rank: RankId;
  requestId: string;
  sampleId: number;
  turn: number;
  contextTokens: number;
  /** Context tokens found in this rank's prefix cache (not prefilled again). */
  cachedTokens: number;
  prefillSimMs: number;
  decodeSimMs: number;
  targetTokens: number;
  outputTokens: number;
  finishReason: TurnResult['finishReason'];
  concurrencyAtStart: number;
}

export interface SimRolloutEngineOptions {
  rank: RankId;
  /** Global ids of the GPUs this rank's engine spans (TP×PP). */
  gpus: readonly GpuId[];
  cost: CostModel;
  workload: WorkloadModel;
  clock: SimClock;
  /** The worker process's GPU memory ledger, shared with the other engines and the trainer. */
  memory: SimGpuMemory;
  /** JSON file persisting {weightVersion, resident}; omitted: nothing survives the object. */
  statePath?: string;
  /** Called after every generate call with its computed timing. */
  onTurn?: (timing: SimTurnTiming) => void;
  /** The KV-cache tokens this engine reports (`simulatedKvCapacityTokens`); omitted: it reports none. */
  kvCapacityTokens?: number;
}

export class SimRolloutEngine implements RolloutEngine {
  readonly rank: RankId;
  readonly gpus: readonly GpuId[];
  private readonly name: string;
  private readonly cost: CostModel;
  private readonly workload: WorkloadModel;
  private readonly clock: SimClock;
  private readonly memory: SimGpuMemory;
  private readonly statePath: string | undefined;
  private readonly onTurn: ((timing: SimTurnTiming) => void) | undefined;
  private readonly kvCapacity: number | undefined;
  private readonly scheduler: DecodeScheduler;
  private readonly gate: TransitionGate;
  private weightVersion: number;
  private weightGroup: string | undefined;
  /** Weight sync by broadcast (needs statePath: the group folder sits beside the state file). */
  readonly broadcast: WeightReceiver | undefined;
  private readonly resident = new Set<MemoryTag>();
  /** Prefix cache: per sample, the context length (tokens) whose KV this rank holds. */
  private readonly prefixCache = new Map<number, number>();
  /** Bumped whenever the prefix cache is flushed, so a late write from an older request is dropped. */
  private cacheEpoch = 0;

  constructor(options: SimRolloutEngineOptions) {
    this.rank = checkIntRange('rollout engine rank', options.rank, 0, Number.MAX_SAFE_INTEGER);
    checkNonEmpty(`GPUs of rollout rank ${options.rank}`, options.gpus);
    checkNoDuplicates(`GPUs of rollout rank ${options.rank}`, options.gpus);
    this.gpus = [...options.gpus];
    this.name = `rollout rank ${this.rank}`;
    this.cost = options.cost;
    this.workload = options.workload;
    this.clock = options.clock;
    this.memory = options.memory;
    this.statePath = options.statePath;
    this.onTurn = options.onTurn;
    this.kvCapacity = options.kvCapacityTokens === undefined ? undefined : checkIntRange(`${this.name}: KV capacity (tokens)`, options.kvCapacityTokens, 1, Number.MAX_SAFE_INTEGER);
    this.scheduler = new DecodeScheduler(options.clock, options.cost);
    this.gate = new TransitionGate(this.name);

    const saved = this.statePath === undefined ? undefined : readStateFile(this.statePath, engineStateSchema, this.name);
    // A fresh engine process starts with its weights loaded and its KV cache allocated.
    const state: EngineState = saved ?? { weightVersion: 0, resident: [...ALL_MEMORY_TAGS] };
    this.weightVersion = state.weightVersion;
    this.weightGroup = state.weightGroup;
    this.broadcast =
      this.statePath === undefined
        ? undefined
        : new SimWeightReceiver({
            name: this.name,
            dir: path.join(path.dirname(this.statePath), 'broadcast'),
            clock: this.clock,
            cost: this.cost,
            joined: () => this.weightGroup,
            setJoined: (group) => {
              this.weightGroup = group;
              this.persist();
            },
            apply: (version) => this.applyBroadcastVersion(version),
          });
    for (const tag of RESUME_ORDER) {
      if (!state.resident.includes(tag)) continue;
      // The engine process holds this memory; make this process's ledger show it (see SimGpuMemory.adopt).
      this.memory.adopt(this.owner(tag), this.gpus, this.gibPerGpu(tag));
      this.resident.add(tag);
    }
    this.persist();
  }

  private owner(tag: MemoryTag): string {
    return `${this.name} ${tag}`;
  }

  private gibPerGpu(tag: MemoryTag): number {
    return tag === 'weights' ? this.cost.rolloutWeightsGiBPerGpu : this.cost.rolloutKvCacheGiBPerGpu;
  }

  /** The share of a release/resume time spent on one tag: proportional to its memory (equal if both are 0). */
  private shareOf(tag: MemoryTag, totalMs: number): number {
    return memoryTagShareMs(this.cost, tag, totalMs);
  }

  private residentTags(): MemoryTag[] {
    return ALL_MEMORY_TAGS.filter((tag) => this.resident.has(tag));
  }

  private persist(): void {
    if (this.statePath === undefined) return;
    const state: EngineState = { weightVersion: this.weightVersion, resident: this.residentTags(), ...(this.weightGroup === undefined ? {} : { weightGroup: this.weightGroup }) };
    writeJsonAtomic(this.statePath, state);
  }

  private flushPrefixCache(): void {
    this.prefixCache.clear();
    this.cacheEpoch++;
  }

  private validateTags(method: string, tags: readonly MemoryTag[]): MemoryTag[] {
    const parsed = z.array(memoryTagSchema).safeParse(tags);
    if (!parsed.success) throw new EngineStateError(this.name, `${method}: unknown memory tag in ${JSON.stringify(tags)} (known: ${ALL_MEMORY_TAGS.join(', ')})`);
    return ALL_MEMORY_TAGS.filter((tag) => parsed.data.includes(tag));
  }

  private validateRequest(request: TurnRequest): void {
    if (typeof request.requestId !== 'string' || request.requestId.length === 0) {
      throw new EngineStateError(this.name, 'generate: requestId must be a non-empty string');
    }
    const subject = (field: string): string => `${this.name} generate ${request.requestId} ${field}`;
    checkIntRange(subject('sampleId'), request.sampleId, 0, Number.MAX_SAFE_INTEGER);
    checkIntRange(subject('turn'), request.turn, 0, Number.MAX_SAFE_INTEGER);
    checkIntRange(subject('contextTokens'), request.contextTokens, 0, Number.MAX_SAFE_INTEGER);
    checkIntRange(subject('prefixTokens'), request.prefixTokens, 0, Number.MAX_SAFE_INTEGER);
    checkIntRange(subject('maxNewTokens'), request.maxNewTokens, 0, Number.MAX_SAFE_INTEGER);
  }

  async generate(request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> {
    // Everything up to scheduler.start runs synchronously, so no transition can slip in between
    // the checks and the request counting as running.
    this.validateRequest(request);
    const missing = ALL_MEMORY_TAGS.filter((tag) => !this.resident.has(tag));
    if (missing.length > 0) {
      throw new EngineStateError(this.name, `generate ${request.requestId}: ${missing.join(' and ')} not resident (resume memory first)`);
    }
    const transition = this.gate.inProgress;
    if (transition !== undefined) {
      throw new EngineStateError(this.name, `generate ${request.requestId}: refused while ${transition} is in progress`);
    }
    if (this.scheduler.has(request.requestId)) {
      throw new EngineStateError(this.name, `generate: request ${request.requestId} is already running`);
    }

    const { tokens: targetTokens, capped } = this.workload.turnTarget(request.sampleId, request.turn, request.prefixTokens, request.maxNewTokens);
    const cachedTokens = Math.min(this.prefixCache.get(request.sampleId) ?? 0, request.contextTokens);
    const prefillSimMs = prefillMs(this.cost, request.contextTokens - cachedTokens);
    const weightVersion = this.weightVersion;
    const epoch = this.cacheEpoch;

    if (signal?.aborted) {
      return this.report(request, cachedTokens, targetTokens, {
        outputTokens: 0, completed: false, prefillSimMs: 0, decodeSimMs: 0, concurrencyAtStart: this.scheduler.running,
      }, capped, weightVersion);
    }
    this.prefixCache.set(request.sampleId, request.contextTokens);
    const onAbort = (): void => {
      this.scheduler.abort(request.requestId);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const outcome = await this.scheduler.start({ id: request.requestId, targetTokens, prefillSimMs });
    signal?.removeEventListener('abort', onAbort);
    // The KV of what was generated (complete or partial) stays cached for the sample's next call.
    if (this.cacheEpoch === epoch) this.prefixCache.set(request.sampleId, request.contextTokens + outcome.outputTokens);
    return this.report(request, cachedTokens, targetTokens, outcome, capped, weightVersion);
  }

  private report(
    request: TurnRequest,
    cachedTokens: number,
    targetTokens: number,
    outcome: { outputTokens: number; completed: boolean; prefillSimMs: number; decodeSimMs: number; concurrencyAtStart: number },
    capped: boolean,
    weightVersion: number,
  ): TurnResult {
    const finishReason: TurnResult['finishReason'] = !outcome.completed ? 'abort' : capped ? 'length' : 'stop';
    this.onTurn?.({
      rank: this.rank,
      requestId: request.requestId,
      sampleId: request.sampleId,
      turn: request.turn,
      contextTokens: request.contextTokens,
      cachedTokens,
      prefillSimMs: outcome.prefillSimMs,
      decodeSimMs: outcome.decodeSimMs,
      targetTokens,
      outputTokens: outcome.outputTokens,
      finishReason,
      concurrencyAtStart: outcome.concurrencyAtStart,
    });
    return { requestId: request.requestId, outputTokens: outcome.outputTokens, finishReason, weightVersion };
  }

  async abortAll(): Promise<void> {
    this.scheduler.abortAll();
  }

  /**
   * The engine's process restarted (a crash, a supervisor's restart; the harness's `restart`
   * fault): it comes back as a fresh process does, serving its base weights (v0) with all its
   * memory allocated, in no weight group, its prefix cache empty and its requests gone.
   */
  restart(): void {
    this.scheduler.abortAll();
    for (const tag of RESUME_ORDER) {
      if (this.resident.has(tag)) continue;
      // A GPU still held by the trainer fails the restart, as the real allocation would.
      this.memory.allocate(this.owner(tag), this.gpus, this.gibPerGpu(tag));
      this.resident.add(tag);
    }
    this.weightVersion = 0;
    this.weightGroup = undefined;
    this.flushPrefixCache();
    this.persist();
  }

  releaseMemory(tags: readonly MemoryTag[]): Promise<void> {
    let wanted: MemoryTag[];
    try {
      wanted = this.validateTags('releaseMemory', tags);
    } catch (err) {
      return Promise.reject(err);
    }
    const method = `releaseMemory([${wanted.join(', ')}])`;
    return this.gate.run(method, async () => {
      const toRelease = RELEASE_ORDER.filter((tag) => wanted.includes(tag) && this.resident.has(tag));
      if (toRelease.length === 0) return;
      if (this.scheduler.running > 0) {
        throw new EngineStateError(this.name, `${method} with ${this.scheduler.running} running request(s): abort them first (abortAll)`);
      }
      for (const tag of toRelease) {
        await this.clock.sleep(this.shareOf(tag, this.cost.offloadMs));
        this.memory.free(this.owner(tag), this.gpus);
        this.resident.delete(tag);
        // Freed KV memory takes the prefix cache with it.
        if (tag === 'kv_cache') this.flushPrefixCache();
        this.persist();
      }
    });
  }

  resumeMemory(tags: readonly MemoryTag[]): Promise<void> {
    let wanted: MemoryTag[];
    try {
      wanted = this.validateTags('resumeMemory', tags);
    } catch (err) {
      return Promise.reject(err);
    }
    const method = `resumeMemory([${wanted.join(', ')}])`;
    return this.gate.run(method, async () => {
      for (const tag of RESUME_ORDER) {
        if (!wanted.includes(tag) || this.resident.has(tag)) continue;
        // Allocate first: a GPU still held by the trainer fails now, not after the load time.
        this.memory.allocate(this.owner(tag), this.gpus, this.gibPerGpu(tag));
        await this.clock.sleep(this.shareOf(tag, this.cost.onloadMs));
        this.resident.add(tag);
        this.persist();
      }
    });
  }

  updateWeights(version: number, path: string): Promise<void> {
    const method = `updateWeights(v${version})`;
    return this.gate.run(method, async () => {
      checkIntRange(`${this.name} updateWeights version`, version, 0, Number.MAX_SAFE_INTEGER);
      if (!this.resident.has('weights')) {
        throw new EngineStateError(this.name, `${method}: weights are not resident (resume weights first)`);
      }
      if (version < this.weightVersion) {
        throw new EngineStateError(this.name, `${method}: refusing to go back from v${this.weightVersion}`);
      }
      if (version === this.weightVersion) return;
      if (this.scheduler.running > 0) {
        throw new EngineStateError(this.name, `${method} with ${this.scheduler.running} running request(s): stop generation first (abortAll)`);
      }
      await this.checkWeightsFile(version, path);
      await this.clock.sleep(this.cost.weightSyncMs);
      this.weightVersion = version;
      // KV computed under the old weights is stale (SGLang flushes its cache on a weight update).
      this.flushPrefixCache();
      this.persist();
    });
  }

  /** The end of a received broadcast: the whole version is swapped in at once. */
  private applyBroadcastVersion(version: number): Promise<void> {
    const method = `receiveWeights(v${version})`;
    return this.gate.run(method, async () => {
      if (!this.resident.has('weights')) throw new EngineStateError(this.name, `${method}: weights are not resident (resume weights first)`);
      if (version < this.weightVersion) throw new EngineStateError(this.name, `${method}: refusing to go back from v${this.weightVersion}`);
      if (this.scheduler.running > 0) throw new EngineStateError(this.name, `${method} with ${this.scheduler.running} running request(s): stop generation first (abortAll)`);
      this.weightVersion = version;
      this.flushPrefixCache();
      this.persist();
    });
  }

  private async checkWeightsFile(version: number, path: string): Promise<void> {
    let text: string;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (err) {
      throw new EngineStateError(this.name, `updateWeights(v${version}): cannot read weights file ${path}: ${(err as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new EngineStateError(this.name, `updateWeights(v${version}): weights file ${path} is not valid JSON`);
    }
    const parsed = weightsFileSchema.safeParse(json);
    if (!parsed.success) {
      throw new EngineStateError(this.name, `updateWeights(v${version}): weights file ${path} has no valid "version" field`);
    }
    if (parsed.data.version !== version) {
      throw new EngineStateError(this.name, `updateWeights(v${version}): weights file ${path} holds v${parsed.data.version}, not v${version}`);
    }
  }

  async status(): Promise<EngineStatus> {
    return { weightVersion: this.weightVersion, resident: this.residentTags(), runningRequests: this.scheduler.running };
  }

  /** The capacity of the rank it models; a declared figure, not a limit (the simulator's ranks queue beyond theirs). */
  async kvCapacityTokens(): Promise<number | undefined> {
    return this.kvCapacity;
  }
}
