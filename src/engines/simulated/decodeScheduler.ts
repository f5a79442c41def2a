/**
 * Timing of the requests running on one simulated rollout rank: an event-driven
 * processor-sharing model of continuous batching.
 *
 * A request first prefills (a fixed simulated delay given by the caller, from the tokens not in
 * the prefix cache), then decodes. The rank's aggregate decode throughput at concurrency c is
 *   T(c) = decodeTokensPerSecondPerRank · c / (c + decodeHalfSaturationConcurrency),
 * shared equally: every decoding request advances at T(c)/c tokens/s, where c counts all running
 * requests (prefilling ones too: they occupy batch slots and compute, as chunked prefill does).
 *
 * Event-driven, not stepped: whenever c changes (a request starts, completes or is aborted) the
 * progress of every request is brought up to date at the old rate, and a single timer is set for
 * the earliest completion at the new rate. Between events the rate is constant, so progress is
 * exact (up to timer resolution); aborts read progress at the instant they happen.
 */
import { MAX_TIMER_DELAY_MS, type SimClock } from './clock';
import { decodeTokensPerMsPerRequest, type DecodeCost } from './costFunctions';

/**
 * Jobs whose planned end is at most this many real ms away count as done when the timer fires:
 * Node timers have ms resolution and may fire a little early; re-arming for a sub-ms remainder
 * would only spin.
 */
const TIMER_SLACK_REAL_MS = 1;

export interface DecodeJobSpec {
  id: string;
  /** Tokens to generate; 0 is allowed (the job completes right after prefill). */
  targetTokens: number;
  /** Simulated prefill time before decoding starts. */
  prefillSimMs: number;
}

export interface DecodeOutcome {
  /** Whole tokens generated: targetTokens if completed, the part decoded so far if aborted. */
  outputTokens: number;
  completed: boolean;
  prefillSimMs: number;
  /** Simulated time spent decoding (from the end of prefill to completion or abort; 0 if aborted in prefill). */
  decodeSimMs: number;
  /** Running requests (this one included) when the job started. */
  concurrencyAtStart: number;
}

interface Job {
  spec: DecodeJobSpec;
  /** Fractional tokens decoded so far. */
  decoded: number;
  startRealMs: number;
  decodeStartRealMs: number;
  /** When the job completes at the current rate (recomputed on every event). */
  plannedEndRealMs: number;
  concurrencyAtStart: number;
  settle: (outcome: DecodeOutcome) => void;
}

export type { DecodeCost };

export class DecodeScheduler {
  private readonly jobs = new Map<string, Job>();
  private lastAdvanceRealMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly clock: SimClock,
    private readonly cost: DecodeCost,
  ) {
    this.lastAdvanceRealMs = clock.realNowMs();
  }

  /** Requests running (prefilling or decoding). */
  get running(): number {
    return this.jobs.size;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  /** Per-request decode rate (tokens per simulated ms) at the current concurrency. */
  private ratePerSimMs(): number {
    return decodeTokensPerMsPerRequest(this.cost, this.jobs.size);
  }

  /** Starts a job; resolves when it completes or is aborted (never rejects). */
  start(spec: DecodeJobSpec): Promise<DecodeOutcome> {
    if (this.jobs.has(spec.id)) throw new Error(`decode job ${spec.id} is already running`);
    const now = this.clock.realNowMs();
    this.advance(now);
    return new Promise<DecodeOutcome>((settle) => {
      this.jobs.set(spec.id, {
        spec,
        decoded: 0,
        startRealMs: now,
        decodeStartRealMs: now + this.clock.toRealMs(spec.prefillSimMs),
        plannedEndRealMs: Number.POSITIVE_INFINITY,
        concurrencyAtStart: this.jobs.size + 1,
        settle,
      });
      this.replan(now);
    });
  }

  /** Aborts one job (it resolves with its partial output). Returns false if it is not running. */
  abort(id: string): boolean {
    const job = this.jobs.get(id);
    if (job === undefined) return false;
    const now = this.clock.realNowMs();
    this.advance(now);
    this.finish(job, now, false);
    this.replan(now);
    return true;
  }

  /** Aborts every job; each has resolved when this returns. */
  abortAll(): void {
    const now = this.clock.realNowMs();
    this.advance(now);
    for (const job of [...this.jobs.values()]) this.finish(job, now, false);
    this.replan(now);
  }

  /** Brings every job's progress up to `now` at the rate of the concurrency that held since the last event. */
  private advance(now: number): void {
    const rate = this.ratePerSimMs();
    for (const job of this.jobs.values()) {
      const from = Math.max(this.lastAdvanceRealMs, job.decodeStartRealMs);
      if (now > from) job.decoded = Math.min(job.spec.targetTokens, job.decoded + this.clock.toSimMs(now - from) * rate);
    }
    this.lastAdvanceRealMs = now;
  }

  /** Recomputes planned ends at the current rate and arms one timer for the earliest. */
  private replan(now: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.jobs.size === 0) return;
    const rate = this.ratePerSimMs();
    let earliest = Number.POSITIVE_INFINITY;
    for (const job of this.jobs.values()) {
      const remaining = job.spec.targetTokens - job.decoded;
      job.plannedEndRealMs = Math.max(now, job.decodeStartRealMs) + this.clock.toRealMs(remaining / rate);
      earliest = Math.min(earliest, job.plannedEndRealMs);
    }
    // A clamped (very long) wait just fires early: onTimer finds nothing due and re-arms.
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, Math.min(earliest - now, MAX_TIMER_DELAY_MS)));
  }

  private onTimer(): void {
    this.timer = undefined;
    const now = this.clock.realNowMs();
    this.advance(now);
    for (const job of [...this.jobs.values()]) {
      if (job.plannedEndRealMs <= now + TIMER_SLACK_REAL_MS) this.finish(job, now, true);
    }
    this.replan(now);
  }

  private finish(job: Job, now: number, completed: boolean): void {
    this.jobs.delete(job.spec.id);
    // A completed job ended at its planned instant (the model's time), not when the timer got round to it.
    const decodeEnd = completed ? job.plannedEndRealMs : now;
    job.settle({
      outputTokens: completed ? job.spec.targetTokens : Math.min(job.spec.targetTokens, Math.floor(job.decoded)),
      completed,
      prefillSimMs: completed || now >= job.decodeStartRealMs ? job.spec.prefillSimMs : this.clock.toSimMs(now - job.startRealMs),
      decodeSimMs: Math.max(0, this.clock.toSimMs(decodeEnd - job.decodeStartRealMs)),
      concurrencyAtStart: job.concurrencyAtStart,
    });
  }
}
