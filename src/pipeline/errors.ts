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
