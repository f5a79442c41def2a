/**
 * At most one state transition (memory release/resume, weight update, onload, train step...)
 * per engine at a time.
 *
 * A repeat of the transition in progress (same name, e.g. an activity retried while its first
 * attempt is still running in this process) joins it and gets the same outcome; a different
 * transition meanwhile is an ordering bug and is refused with EngineStateError.
 */
import { EngineStateError } from './errors';

export class TransitionGate {
  private current: { name: string; promise: Promise<unknown> } | undefined;

  constructor(private readonly engine: string) {}

  /** The transition in progress, if any. */
  get inProgress(): string | undefined {
    return this.current?.name;
  }

  run<T>(name: string, transition: () => Promise<T>): Promise<T> {
    if (this.current !== undefined) {
      if (this.current.name === name) return this.current.promise as Promise<T>;
      return Promise.reject(new EngineStateError(this.engine, `${name} called while ${this.current.name} is in progress`));
    }
    const promise = transition().finally(() => {
      if (this.current?.promise === promise) this.current = undefined;
    });
    this.current = { name, promise };
    return promise;
  }
}
