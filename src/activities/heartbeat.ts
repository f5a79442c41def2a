/**
 * Heartbeats for every activity. Temporal notices a dead worker only through a missed heartbeat
 * (otherwise it waits out start-to-close), and delivers cancellation only with a heartbeat
 * response; so every activity heartbeats while it runs, whatever it does.
 */
import { Context } from '@temporalio/activity';

/** Heartbeats every `intervalMs` (with `details()`) while `work` runs. */
export async function withHeartbeat<T>(intervalMs: number, details: () => unknown, work: () => Promise<T>): Promise<T> {
  const context = Context.current();
  // A local activity runs inside its workflow's task: the workflow task timeout stands in for the heartbeat.
  if (context.info.isLocal) return work();
  context.heartbeat(details());
  const timer = setInterval(() => context.heartbeat(details()), intervalMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

export type AsyncFunctions<T> = { [K in keyof T]: T[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => Promise<R> : never };

/** Wraps each activity so it heartbeats while running (activities that report progress still may). */
export function heartbeating<T extends AsyncFunctions<T>>(activities: T, intervalMs: number): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities) as [string, (...args: unknown[]) => Promise<unknown>][]) {
    wrapped[name] = (...args: unknown[]) => withHeartbeat(intervalMs, () => ({ activity: name }), () => fn(...args));
  }
  return wrapped as T;
}
