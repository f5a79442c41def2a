/**
 * One rollout rank's continuous batching in virtual time, under a RankModel
 * (src/engines/simulated/roofline.ts): the capacity-aware roofline, or the assumed-rate model of the
 * pipeline's simulated engines (the same processor-sharing rate as their DecodeScheduler).
 *
 * A request (one turn's generate call) goes through:
 * - queued: waits, first come first served, until the rank has KV room for its whole turn
 *   (context + tokens to generate, reserved at admission as SGLang reserves max_new_tokens) and a
 *   running slot; room is made by evicting the least recently used idle prefixes;
 * - prefill: the context tokens not in the rank's prefix cache. With a shared prefill the rank
 *   prefills one request at a time and decoding waits meanwhile (prefill first, as SGLang
 *   schedules); otherwise each request has its own timer;
 * - decode: every decoding request gains one token per step; a step's time depends on the batch
 *   and on the KV the batch holds.
 * When a turn ends its KV stays resident as an idle prefix of that trajectory (reused by its next
 * turn here, unless evicted or flushed by a weight update or an offload).
 *
 * Instead of updating every request at every event, the rank keeps S, the tokens one decoding
 * request has gained since the rank started (the integral of the per-request rate): a request that
 * begins decoding at S0 with target T completes when S reaches S0 + T. A heap of those thresholds
 * gives the next completion in O(log n) per event. The rate is re-evaluated at every event.
 */
import type { RankModel } from '../engines/simulated/roofline';
import type { EventQueue, SimEvent } from './eventQueue';

export interface DecodeJob {
  readonly sampleId: number;
  readonly contextTokens: number;
  readonly targetTokens: number;
  /** Called when the job completes (not when aborted). */
  readonly onComplete: (job: DecodeJob) => void;
  /** Internal state. */
  phase: 'queued' | 'prefill' | 'decode' | 'done';
  /** Context tokens found in the prefix cache at admission. */
  cachedTokens: number;
  /** KV tokens reserved at admission (context + target). */
  reservedTokens: number;
  /** The cache generation the job was admitted under (a flush starts a new one). */
  generation: number;
  startS: number;
  threshold: number;
  /** Index in the decoding heap (-1 when not decoding). */
  heapIndex: number;
  prefillEvent: SimEvent | undefined;
}

/** Relative slack when deciding that a job's threshold has been reached (float rounding). */
const EPSILON_TOKENS = 1e-7;

export class VirtualRank {
  /** Admitted requests (prefilling or decoding). */
  running = 0;
  /** Tokens decoded by this rank (all requests, aborted ones included). */
  decodedTokens = 0;
  /**
   * Tokens the rank would have decoded had it decoded its running requests without pause (no
   * prefill stall) at the step time of that batch: the work-weighted occupancy's denominator.
   */
  potentialTokens = 0;
  /** Context tokens prefilled (not found in the prefix cache). */
  prefilledTokens = 0;
  /** Requests admitted, and those among them that found none of their context cached although they had some. */
  admitted = 0;
  /** Requests that had to wait for KV room or a running slot. */
  queuedAdmissions = 0;
  /** Idle prefixes evicted to make room. */
  evictions = 0;
  /** Tokens one request has decoded since the rank started. */
  private service = 0;
  private lastMs = 0;
  /** Per-request decode rate (tokens per ms) since the last event. */
  private rate = 0;
  /** Rank decode rate (tokens per ms) of the running requests without pause, since the last event. */
  private potentialRate = 0;
  private readonly waiting: DecodeJob[] = [];
  private readonly decoding: DecodeJob[] = [];
  /** Σ (context − startS) over decoding jobs: their KV is this + decoding.length · service. */
  private decodingContextBase = 0;
  private readonly prefillQueue: DecodeJob[] = [];
  private activePrefill: DecodeJob | undefined;
  private completionEvent: SimEvent | undefined;
  /** KV reserved by admitted jobs. */
  private reservedTokens = 0;
  /** Idle prefixes by sample, least recently used first (Map insertion order). */
  private idle = new Map<number, number>();
  private idleTokens = 0;
  private generation = 0;
  /** The completion event's handler (one closure per rank, not one per re-plan). */
  private readonly completionHandler = (): void => this.onCompletion();
  /** Called when `running` changes between 0 and non-zero (the rank's GPUs turn busy or idle). */
  onBusyChange: ((busy: boolean) => void) | undefined;

  constructor(
    private readonly model: RankModel,
    private readonly queue: EventQueue,
    private readonly now: () => number,
  ) {}

  /** KV tokens in use (reserved by running requests + idle prefixes). */
  get kvTokensInUse(): number {
    return this.reservedTokens + this.idleTokens;
  }

  start(sampleId: number, contextTokens: number, targetTokens: number, onComplete: (job: DecodeJob) => void): DecodeJob {
    const need = contextTokens + targetTokens;
    if (need > this.model.kvCapacityTokens) {
      throw new Error(
        `VirtualRank: sample ${sampleId} needs ${need} KV tokens (context ${contextTokens} + ${targetTokens} to generate), more than the rank's capacity of ${this.model.kvCapacityTokens}: lower maxTokens or give the rank more memory`,
      );
    }
    this.advance();
    const job: DecodeJob = {
      sampleId,
      contextTokens,
      targetTokens,
      onComplete,
      phase: 'queued',
      cachedTokens: 0,
      reservedTokens: need,
      generation: this.generation,
      startS: 0,
      threshold: 0,
      heapIndex: -1,
      prefillEvent: undefined,
    };
    this.waiting.push(job);
    // A call that only joins the queue changes no rate: the armed completion event stays valid.
    if (this.admitWaiting()) this.replan();
    if (job.phase === 'queued') this.queuedAdmissions++;
    return job;
  }

  /** Aborts a queued or running job; returns the whole tokens it decoded so far. */
  abort(job: DecodeJob): number {
    if (job.phase === 'done') throw new Error(`VirtualRank.abort: the job of sample ${job.sampleId} is not running`);
    this.advance();
    let decoded = 0;
    if (job.phase === 'queued') {
      this.waiting.splice(this.waiting.indexOf(job), 1);
      job.phase = 'done';
      return 0;
    }
    if (job.phase === 'prefill') {
      this.cancelPrefill(job);
      this.release(job, job.cachedTokens);
    } else {
      decoded = Math.min(job.targetTokens, Math.floor(this.service - job.startS + EPSILON_TOKENS));
      this.removeDecoding(job);
      this.release(job, job.contextTokens + decoded);
    }
    job.phase = 'done';
    this.setRunning(this.running - 1);
    this.admitWaiting();
    this.replan();
    return decoded;
  }

  /** Whole tokens a running job has decoded so far (0 while it waits or prefills). */
  decodedSoFar(job: DecodeJob): number {
    if (job.phase !== 'decode') return 0;
    this.advance();
    return Math.min(job.targetTokens, Math.floor(this.service - job.startS + EPSILON_TOKENS));
  }

  /** Drops every idle prefix (new weights, or the rank's memory released); running jobs keep theirs until they end. */
  flushCache(): void {
    this.idle = new Map();
    this.idleTokens = 0;
    this.generation++;
  }

  private setRunning(next: number): void {
    const wasBusy = this.running > 0;
    this.running = next;
    if (wasBusy !== next > 0) this.onBusyChange?.(next > 0);
  }

  private advance(): void {
    const now = this.now();
    if (now > this.lastMs) {
      const gained = (now - this.lastMs) * this.rate;
      this.service += gained;
      this.decodedTokens += gained * this.decoding.length;
      this.potentialTokens += (now - this.lastMs) * this.potentialRate;
      this.lastMs = now;
    }
  }

  /** Admits queued jobs, in order, while the head fits (KV room and a running slot); true if any was. */
  private admitWaiting(): boolean {
    let admittedAny = false;
    while (this.waiting.length > 0) {
      const job = this.waiting[0]!;
      if (this.running >= this.model.maxRunningRequests) break;
      if (this.reservedTokens + job.reservedTokens > this.model.kvCapacityTokens) break;
      this.waiting.shift();
      const own = this.idle.get(job.sampleId);
      if (own !== undefined) {
        this.idle.delete(job.sampleId);
        this.idleTokens -= own;
      }
      this.reservedTokens += job.reservedTokens;
      this.evictUntilFits();
      job.cachedTokens = Math.min(own ?? 0, job.contextTokens);
      job.generation = this.generation;
      job.phase = 'prefill';
      this.admitted++;
      this.setRunning(this.running + 1);
      this.prefilledTokens += job.contextTokens - job.cachedTokens;
      if (this.model.sharedPrefill) this.prefillQueue.push(job);
      else job.prefillEvent = this.queue.schedule(this.now() + this.model.prefillMs(job.contextTokens - job.cachedTokens, job.cachedTokens), () => this.endPrefill(job));
      admittedAny = true;
    }
    if (admittedAny) this.nextPrefill();
    return admittedAny;
  }

  private evictUntilFits(): void {
    const capacity = this.model.kvCapacityTokens;
    if (this.reservedTokens + this.idleTokens <= capacity) return;
    for (const [sampleId, tokens] of this.idle) {
      this.idle.delete(sampleId);
      this.idleTokens -= tokens;
      this.evictions++;
      if (this.reservedTokens + this.idleTokens <= capacity) return;
    }
  }

  /** Ends a job's reservation; its KV (up to `residentTokens`) stays as an idle prefix if still valid. */
  private release(job: DecodeJob, residentTokens: number): void {
    this.reservedTokens -= job.reservedTokens;
    if (job.generation !== this.generation || residentTokens <= 0) return;
    const previous = this.idle.get(job.sampleId);
    if (previous !== undefined) {
      this.idle.delete(job.sampleId);
      this.idleTokens -= previous;
    }
    this.idle.set(job.sampleId, residentTokens);
    this.idleTokens += residentTokens;
  }

  /** Shared prefill: starts the next queued prefill if none runs. */
  private nextPrefill(): void {
    if (!this.model.sharedPrefill || this.activePrefill !== undefined) return;
    const job = this.prefillQueue.shift();
    if (job === undefined) return;
    this.activePrefill = job;
    job.prefillEvent = this.queue.schedule(this.now() + this.model.prefillMs(job.contextTokens - job.cachedTokens, job.cachedTokens), () => this.endPrefill(job));
  }

  private cancelPrefill(job: DecodeJob): void {
    if (job.prefillEvent !== undefined) {
      job.prefillEvent.cancelled = true;
      job.prefillEvent = undefined;
    }
    if (!this.model.sharedPrefill) return;
    if (this.activePrefill === job) {
      this.activePrefill = undefined;
      this.nextPrefill();
    } else {
      this.prefillQueue.splice(this.prefillQueue.indexOf(job), 1);
    }
  }

  private endPrefill(job: DecodeJob): void {
    this.advance();
    job.prefillEvent = undefined;
    if (this.activePrefill === job) this.activePrefill = undefined;
    job.phase = 'decode';
    job.startS = this.service;
    job.threshold = this.service + job.targetTokens;
    this.decodingContextBase += job.contextTokens - job.startS;
    this.pushDecoding(job);
    this.nextPrefill();
    this.replan();
  }

  /** The per-request decode rate now (tokens per ms). */
  private currentRate(): number {
    if (this.model.sharedPrefill) {
      const batch = this.decoding.length;
      if (batch === 0 || this.activePrefill !== undefined) return 0;
      const kv = this.decodingContextBase + batch * this.service;
      return 1 / this.model.decodeStepMs(batch, kv);
    }
    // Assumed-rate model: every running request (prefilling ones too) shares the rank.
    return this.running > 0 ? 1 / this.model.decodeStepMs(this.running, 0) : 0;
  }

  /** Re-evaluates the rate and re-arms the single completion event for the earliest threshold. */
  private replan(): void {
    if (this.completionEvent !== undefined) this.completionEvent.cancelled = true;
    this.completionEvent = undefined;
    this.rate = this.currentRate();
    this.potentialRate = this.running > 0 ? this.running / this.model.decodeStepMs(this.running, this.decodingContextBase + this.decoding.length * this.service) : 0;
    const first = this.decoding[0];
    if (first === undefined || this.rate <= 0) return;
    const at = this.now() + Math.max(0, first.threshold - this.service) / this.rate;
    this.completionEvent = this.queue.schedule(at, this.completionHandler);
  }

  private onCompletion(): void {
    this.completionEvent = undefined;
    this.advance();
    const done: DecodeJob[] = [];
    while (this.decoding.length > 0 && this.decoding[0]!.threshold <= this.service + EPSILON_TOKENS * Math.max(1, this.service)) {
      const job = this.popDecoding();
      job.phase = 'done';
      this.release(job, job.contextTokens + job.targetTokens);
      done.push(job);
    }
    if (done.length > 0) {
      this.setRunning(this.running - done.length);
      this.admitWaiting();
    }
    this.replan();
    for (const job of done) job.onComplete(job);
  }

  // --- a binary min-heap of decoding jobs by threshold (each job knows its index, for removal on abort)

  private pushDecoding(job: DecodeJob): void {
    this.decoding.push(job);
    job.heapIndex = this.decoding.length - 1;
    this.siftUp(job.heapIndex);
  }

  private popDecoding(): DecodeJob {
    const top = this.decoding[0]!;
    this.removeAt(0);
    return top;
  }

  private removeDecoding(job: DecodeJob): void {
    const i = job.heapIndex;
    if (i < 0 || this.decoding[i] !== job) throw new Error(`VirtualRank: the job of sample ${job.sampleId} is not decoding`);
    this.removeAt(i);
  }

  private removeAt(i: number): void {
    const heap = this.decoding;
    const removed = heap[i]!;
    this.decodingContextBase -= removed.contextTokens - removed.startS;
    removed.heapIndex = -1;
    const last = heap.pop()!;
    if (i < heap.length) {
      heap[i] = last;
      last.heapIndex = i;
      this.siftDown(i);
      this.siftUp(i);
    }
  }

  private siftUp(i: number): void {
    const heap = this.decoding;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.threshold <= heap[i]!.threshold) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const heap = this.decoding;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) return;
      const right = left + 1;
      const child = right < heap.length && heap[right]!.threshold < heap[left]!.threshold ? right : left;
      if (heap[i]!.threshold <= heap[child]!.threshold) return;
      this.swap(i, child);
      i = child;
    }
  }

  private swap(a: number, b: number): void {
    const heap = this.decoding;
    const x = heap[a]!;
    const y = heap[b]!;
    heap[a] = y;
    heap[b] = x;
    y.heapIndex = a;
    x.heapIndex = b;
  }
}
