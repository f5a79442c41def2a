import { describe, expect, it } from 'vitest';
import { isAbortError, SimAbortError, SimClock } from '../../src/engines/simulated/clock';

describe('SimClock', () => {
  it('sleeps simMs × timeScale real ms', async () => {
    const clock = new SimClock({ timeScale: 0.05 });
    const start = performance.now();
    await clock.sleep(1000); // 50 ms real
    const real = performance.now() - start;
    expect(real).toBeGreaterThanOrEqual(45);
    expect(real).toBeLessThan(500);
    expect(clock.elapsedSimMs(start)).toBeGreaterThanOrEqual(900);
  });

  it('never resolves before its deadline (a timer can fire early by the event loop clock)', async () => {
    const clock = new SimClock({ timeScale: 1 });
    const early: number[] = [];
    for (let i = 0; i < 200; i++) {
      const start = performance.now();
      await clock.sleep(2.5);
      const waited = performance.now() - start;
      if (waited < 2.5) early.push(waited);
    }
    expect(early).toEqual([]);
  });

  it('rejects promptly with SimAbortError when the signal aborts, and at once if already aborted', async () => {
    const clock = new SimClock({ timeScale: 1 });
    const controller = new AbortController();
    const start = performance.now();
    setTimeout(() => controller.abort(new Error('shrink')), 10);
    const err = await clock.sleep(3_600_000, controller.signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SimAbortError);
    expect(isAbortError(err)).toBe(true);
    expect((err as Error).message).toBe('aborted: shrink');
    expect(performance.now() - start).toBeLessThan(1000);
    await expect(clock.sleep(10, controller.signal)).rejects.toThrow(SimAbortError);
  });

  it('converts between simulated and real time and validates its inputs', async () => {
    const clock = new SimClock({ timeScale: 0.01 });
    expect(clock.toRealMs(1000)).toBe(10);
    expect(clock.toSimMs(10)).toBe(1000);
    expect(clock.nowSimMs()).toBeGreaterThanOrEqual(0);
    expect(() => new SimClock({ timeScale: 0 })).toThrow(/timeScale/);
    expect(() => new SimClock({ timeScale: Number.POSITIVE_INFINITY })).toThrow(/timeScale/);
    await expect(clock.sleep(-1)).rejects.toThrow(RangeError);
  });
});
