/**
 * The pending half of a begin/await pair of effects (src/iteration/effects.ts): one piece of work
 * at a time, begun once and taken once by its await. Both drivers keep theirs in one.
 */
export function beginAwaitSlot<T>(what: string): { begin(pending: T): void; take(): T } {
  let slot: { pending: T } | undefined;
  return {
    begin(pending) {
      if (slot !== undefined) throw new Error(`${what}: begun already, not yet awaited`);
      slot = { pending };
    },
    take() {
      if (slot === undefined) throw new Error(`${what}: nothing was begun`);
      const { pending } = slot;
      slot = undefined;
      return pending;
    },
  };
}
