/** A rollout engine for the direct stop's tests: its turns run until aborted (src/activities/gpuNode.ts). */
import type { TurnRequest, TurnResult } from '../../src/engines/types';

/** Tokens an aborted turn answers with, by default. */
export const ABORTED_TOKENS = 3;

/** An engine whose turns run until aborted, then answer with the tokens generated so far. */
export class HoldingEngine {
  readonly started: string[] = [];
  private readonly onStart: (() => void)[] = [];
  /** Tokens an aborted turn answers with (0: it was queued and never decoded). */
  abortedTokens = ABORTED_TOKENS;

  generate(request: TurnRequest, signal?: AbortSignal): Promise<TurnResult> {
    this.started.push(request.requestId);
    for (const check of this.onStart) check();
    return new Promise((resolve) => {
      const answer = () => resolve({ requestId: request.requestId, outputTokens: this.abortedTokens, finishReason: 'abort', weightVersion: this.weightVersion });
      if (signal?.aborted) answer();
      else signal?.addEventListener('abort', answer, { once: true });
    });
  }

  /** Resolves once `count` turns have started. */
  turnsStarted(count: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.started.length >= count) resolve();
      };
      this.onStart.push(check);
      check();
    });
  }

  /** What the engine reports of its KV capacity (tokens). */
  kvCapacity = 4096;

  kvCapacityTokens(): Promise<number | undefined> {
    return Promise.resolve(this.kvCapacity);
  }

  /** The weight version the engine serves (a test sets it lower to restart the engine). */
  weightVersion = 0;
  /** How many times its status was read. */
  statusReads = 0;

  status(): Promise<{ weightVersion: number; resident: ('weights' | 'kv_cache')[]; runningRequests: number }> {
    this.statusReads += 1;
    return Promise.resolve({ weightVersion: this.weightVersion, resident: ['weights', 'kv_cache'], runningRequests: 0 });
  }
}
