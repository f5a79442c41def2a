/** Sampling settings an adapter sends with every generation call (from the run config). */
export interface SamplingOptions {
  temperature: number;
  /** Token ids that end a turn besides the model's EOS. */
  stopTokenIds: readonly number[];
  /** Keep generating past EOS (SGLang/vLLM `ignore_eos`); tests use it for fixed-length output. */
  ignoreEos?: boolean;
}

/** What every HTTP rollout adapter is built from. */
export interface RolloutAdapterOptions {
  baseUrl: string;
  apiKey?: string;
  sampling: SamplingOptions;
  /** The weight version the engine serves when it starts (SGLang: --weight-version). */
  initialVersion?: number;
  /**
   * SGLang: how long a turn waits for its /generate to answer once it was aborted before the
   * engine counts as unresponsive (default 30 s; a live engine answers within a scheduler step).
   */
  abortAnswerTimeoutMs?: number;
}
