/**
 * One rollout rank's continuous batching in virtual time: the same processor-sharing model as the
 * simulated engine's DecodeScheduler (src/engines/sim/decodeScheduler.ts), with the same rate
 * function, but driven by the simulator's event queue instead of timers.
 *
 * Every decoding request advances at decodeTokensPerMsPerRequest(c) where c counts all running
 * requests (prefilling ones too). Instead of updating every request at every event, the rank keeps
 * S, the tokens one request has decoded since the rank started (the integral of the per-request
 * rate): a request that begins decoding at S0 with target T completes when S reaches S0 + T. A
 * heap of those thresholds gives the next completion in O(log n) per event.
 */
import { decodeTokensPerMsPerRequest, type DecodeCost } from '../engines/sim/costFunctions';
import type { EventQueue, SimEvent } from './eventQueue';

export interface DecodeJob {
  readonly sampleId: number;
  readonly targetTokens: number;
  readonly prefillMs: number;
  /** Called when the job completes (not when aborted). */
  readonly onComplete: (job: DecodeJob) => void;
  /** Internal state. */
  phase: 'prefill' | 'decode' | 'done';
  startS: number;
  threshold: number;
  prefillEvent: SimEvent | undefined;
}

/** Relative slack when deciding that a job's threshold has been reached (float rounding). */
const EPSILON_TOKENS = 1e-7;

export class VirtualRank {
  /** Running requests (prefilling or decoding). */
  running = 0;
  /** Tokens one request has decoded since the rank started. */
  private service = 0;
  private lastMs = 0;
  private readonly decoding: DecodeJob[] = [];
  private completionEvent: SimEvent | undefined;
  /** Called when `running` changes between 0 and non-zero (the rank's GPUs turn busy or idle). */
  onBusyChange: ((busy: boolean) => void) | undefined;

  constructor(
    private readonly cost: DecodeCost,
    private readonly queue: EventQueue,
    private readonly now: () => number,
  ) {}

  start(sampleId: number, targetTokens: number, prefillMs: number, onComplete: (job: DecodeJob) => void): DecodeJob {
    this.advance();
    const job: DecodeJob = { sampleId, targetTokens, prefillMs, onComplete, phase: 'prefill', startS: 0, threshold: 0, prefillEvent: undefined };
    this.setRunning(this.running + 1);
    job.prefillEvent = this.queue.schedule(this.now() + prefillMs, () => this.beginDecode(job));
    this.replan();
    return job;
  }

  /** Aborts a running job; returns the whole tokens it decoded so far. */
  abort(job: DecodeJob): number {
    if (job.phase === 'done') throw new Error(`VirtualRank.abort: the job of sample ${job.sampleId} is not running`);
    this.advance();
    let decoded = 0;
    if (job.phase === 'prefill') {
      job.prefillEvent!.cancelled = true;
    } else {
      decoded = Math.min(job.targetTokens, Math.floor(this.service - job.startS + EPSILON_TOKENS));
      this.removeDecoding(job);
    }
    job.phase = 'done';
    this.setRunning(this.running - 1);
    this.replan();
    return decoded;
  }

  /** Whole tokens a running job has decoded so far (0 while it prefills). */
  decodedSoFar(job: DecodeJob): number {
    if (job.phase !== 'decode') return 0;
    this.advance();
    return Math.min(job.targetTokens, Math.floor(this.service - job.startS + EPSILON_TOKENS));
  }

  private setRunning(next: number): void {
    const wasBusy = this.running > 0;
    this.running = next;
    if (wasBusy !== next > 0) this.onBusyChange?.(next > 0);
  }

  private advance(): void {
    const now = this.now();
    if (now > this.lastMs) {
      this.service += (now - this.lastMs) * decodeTokensPerMsPerRequest(this.cost, this.running);
      this.lastMs = now;
    }
  }

  private beginDecode(job: DecodeJob): void {
    this.advance();
    job.prefillEvent = undefined;
    job.phase = 'decode';
    job.startS = this.service;
    job.threshold = this.service + job.targetTokens;
    this.pushDecoding(job);
    this.replan();
  }

  /** Re-arms the single completion event for the earliest threshold at the current rate. */
  private replan(): void {
    if (this.completionEvent !== undefined) this.completionEvent.cancelled = true;
    this.completionEvent = undefined;
    const first = this.decoding[0];
    if (first === undefined) return;
    const rate = decodeTokensPerMsPerRequest(this.cost, this.running);
    const at = this.now() + Math.max(0, first.threshold - this.service) / rate;
    this.completionEvent = this.queue.schedule(at, () => this.onCompletion());
  }

  private onCompletion(): void {
    this.completionEvent = undefined;
    this.advance();
    const done: DecodeJob[] = [];
    while (this.decoding.length > 0 && this.decoding[0]!.threshold <= this.service + EPSILON_TOKENS * Math.max(1, this.service)) {
      const job = this.popDecoding();
      job.phase = 'done';
      done.push(job);
    }
    if (done.length > 0) this.setRunning(this.running - done.length);
    this.replan();
    for (const job of done) job.onComplete(job);
  }

  // --- a binary min-heap of decoding jobs by threshold (index kept for removal on abort) ---------
  private readonly position = new Map<DecodeJob, number>();

  private pushDecoding(job: DecodeJob): void {
    this.decoding.push(job);
    this.position.set(job, this.decoding.length - 1);
    this.siftUp(this.decoding.length - 1);
  }

  private popDecoding(): DecodeJob {
    const top = this.decoding[0]!;
    this.removeAt(0);
    return top;
  }

  private removeDecoding(job: DecodeJob): void {
    const i = this.position.get(job);
    if (i === undefined) throw new Error(`VirtualRank: the job of sample ${job.sampleId} is not decoding`);
    this.removeAt(i);
  }

  private removeAt(i: number): void {
    const heap = this.decoding;
    const removed = heap[i]!;
    this.position.delete(removed);
    const last = heap.pop()!;
    if (i < heap.length) {
      heap[i] = last;
      this.position.set(last, i);
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
    this.position.set(y, a);
    this.position.set(x, b);
  }
}
