/**
 * The simulator's event queue: a binary min-heap ordered by (time, insertion sequence), so events
 * at the same virtual instant run in the order they were scheduled. That order, and nothing else,
 * makes a simulation deterministic.
 */
export interface SimEvent {
  readonly at: number;
  readonly seq: number;
  readonly run: () => void;
  /** A cancelled event stays in the heap and is skipped when popped (lazy deletion). */
  cancelled: boolean;
}

export class EventQueue {
  private readonly heap: SimEvent[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  schedule(at: number, run: () => void): SimEvent {
    if (!Number.isFinite(at)) throw new RangeError(`EventQueue.schedule: event time must be finite, got ${at}`);
    const event: SimEvent = { at, seq: this.nextSeq++, run, cancelled: false };
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(event, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = event;
    return event;
  }

  /** Removes and returns the earliest live event, or undefined when none is left. */
  pop(): SimEvent | undefined {
    for (;;) {
      const top = this.popAny();
      if (top === undefined || !top.cancelled) return top;
    }
  }

  private popAny(): SimEvent | undefined {
    const heap = this.heap;
    if (heap.length === 0) return undefined;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      const n = heap.length;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && before(heap[right]!, heap[left]!) ? right : left;
        if (!before(heap[child]!, last)) break;
        heap[i] = heap[child]!;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
