/**
 * Runs an iteration-program step (src/iteration) in the workflow: each suspension is a promise
 * (an activity, a timer, a race of them); its result or error goes back into the program.
 */
import type { Step } from '../iteration/effects';
import { beginAwaitSlot } from '../iteration/beginAwait';

export type Suspension = Promise<unknown>;

export async function drive<T>(step: Step<Suspension, T>): Promise<T> {
  let next = step.next();
  while (!next.done) {
    let value: unknown;
    let failure: { error: unknown } | undefined;
    try {
      value = await next.value;
    } catch (error) {
      failure = { error };
    }
    next = failure === undefined ? step.next(value) : step.throw(failure.error);
  }
  return next.value;
}

/** An effect that waits for one promise. */
export function* awaiting<T>(promise: Promise<T>): Step<Suspension, T> {
  return (yield promise) as T;
}

/**
 * Work begun in one effect and awaited in another (the program's begin/await pairs): one at a
 * time. A failure before the await is kept for it, not reported as unhandled.
 */
export function begunWork<T>(what: string): { begin(work: Promise<T>): void; await(): Step<Suspension, T> } {
  const slot = beginAwaitSlot<Promise<T>>(what);
  return {
    begin(work) {
      slot.begin(work);
      work.catch(() => undefined); // observed by await()
    },
    *await() {
      return yield* awaiting(slot.take());
    },
  };
}

/** "1 shard", "4 shards": a count and its noun, for summaries a person reads. */
export function countOf(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** "0-3", "0,2,5-7": ranks as ranges, for summaries a person reads. */
export function rankRanges(ranks: readonly number[]): string {
  const sorted = [...ranks].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
