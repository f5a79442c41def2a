/**
 * Simulated time for the simulated engines. Simulated durations come from the cost model in
 * simulated milliseconds; `timeScale` (real seconds per simulated second) maps them onto real
 * timers, so a whole run can play 100× faster (0.01) or at GPU speed (1). Timers are real
 * setTimeout calls, never busy waits, so many engines share one event loop.
 */

/** Rejection of an aborted SimClock.sleep (and of the engine calls built on it). */
export class SimAbortError extends Error {
  constructor(readonly reason?: unknown) {
    super(`aborted${reason === undefined ? '' : `: ${reason instanceof Error ? reason.message : String(reason)}`}`);
    // The conventional name, so generic `err.name === 'AbortError'` checks recognise it.
    this.name = 'AbortError';
  }
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/** setTimeout's largest delay; a longer one fires after 1 ms in Node, so long waits are chained. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export interface SimClockOptions {
  /** Real seconds per simulated second (> 0). 1 = real time; 0.01 = 100× faster. */
  timeScale: number;
}

export class SimClock {
  readonly timeScale: number;
  /** Real time (performance.now(), monotonic) at which simulated time 0 began. */
  private readonly originRealMs: number;

  constructor(options: SimClockOptions) {
    if (!(Number.isFinite(options.timeScale) && options.timeScale > 0)) {
      throw new RangeError(`SimClock: timeScale must be a finite number > 0, got ${options.timeScale}`);
    }
    this.timeScale = options.timeScale;
    this.originRealMs = performance.now();
  }

  /** Monotonic real time in ms (the reference for elapsedSimMs). */
  realNowMs(): number {
    return performance.now();
  }

  /** Simulated ms since this clock was created. */
  nowSimMs(): number {
    return this.toSimMs(performance.now() - this.originRealMs);
  }

  toRealMs(simMs: number): number {
    return simMs * this.timeScale;
  }

  toSimMs(realMs: number): number {
    return realMs / this.timeScale;
  }

  /** Simulated ms elapsed since the real instant `sinceRealMs` (a value of realNowMs()). */
  elapsedSimMs(sinceRealMs: number): number {
    return this.toSimMs(performance.now() - sinceRealMs);
  }

  /**
   * Resolves after `simMs` simulated ms (simMs × timeScale real ms). If `signal` aborts first
   * (or already has), REJECTS promptly with SimAbortError and clears the timer.
   */
  sleep(simMs: number, signal?: AbortSignal): Promise<void> {
    if (!(Number.isFinite(simMs) && simMs >= 0)) {
      return Promise.reject(new RangeError(`SimClock.sleep: simMs must be a finite number >= 0, got ${simMs}`));
    }
    if (signal?.aborted) return Promise.reject(new SimAbortError(signal.reason));
    return new Promise<void>((resolve, reject) => {
      const deadline = performance.now() + this.toRealMs(simMs);
      let timer: NodeJS.Timeout;
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(new SimAbortError(signal?.reason));
      };
      const arm = (): void => {
        const remaining = deadline - performance.now();
        timer = setTimeout(() => {
          // Node times a timer from the event loop's cached clock, which can lag performance.now():
          // one can fire up to a millisecond before the deadline, so the rest is waited for.
          if (performance.now() < deadline) return arm();
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }, Math.max(0, Math.min(remaining, MAX_TIMER_DELAY_MS)));
      };
      arm();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
