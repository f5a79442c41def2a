/**
 * Errors of the simulated engines that are not about memory (gpuMemory.ts) or aborts (clock.ts).
 */

/**
 * A call in the wrong state or order: generating without memory resident, releasing KV cache
 * under running requests, training before onload, a lower weight version... A real engine
 * would crash or corrupt state here; the simulation refuses loudly so the control plane's
 * ordering bugs surface in tests instead of being papered over.
 */
export class EngineStateError extends Error {
  constructor(
    /** Which engine, e.g. "rollout rank 3" or "trainer node 0". */
    readonly engine: string,
    detail: string,
  ) {
    super(`${engine}: ${detail}`);
    this.name = 'EngineStateError';
  }
}
