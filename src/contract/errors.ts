/** Error text for status and failure messages: the message and every cause, outermost first. Pure. */
export function describeError(error: unknown): string {
  let text = error instanceof Error ? error.message : String(error);
  let cause = error instanceof Error ? (error as { cause?: unknown }).cause : undefined;
  while (cause instanceof Error) {
    text += `: ${cause.message}`;
    cause = (cause as { cause?: unknown }).cause;
  }
  return text;
}

/**
 * Error types that no retry can fix (bad input, fencing, corruption, wrong routing). Activities
 * raise them as non-retryable failures at the source (src/activities/failFast.ts), so the
 * workflows' retry policies need not list them in every scheduled activity (each list cost about
 * 230 bytes of history per activity).
 */
export const NON_RETRYABLE_ERROR_TYPES: readonly string[] = [
  'ValidationError',
  'SimulatedOutOfMemoryError',
  'FencingError',
  'StoreCorruptionError',
  'SampleNotFoundError',
  'SampleStateError',
  'BatchConflictError',
  'BatchNotFoundError',
  'InvalidInputError',
  'WrongRun',
  'WrongNode',
  'EngineProtocolError',
  'EnvironmentProtocolError',
];
