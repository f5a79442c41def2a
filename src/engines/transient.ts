/**
 * Which engine errors a later call may not meet: the engine gave no answer, broke off an answer
 * it had begun (a cut body or stream: an EngineHttpError with its 2xx status), or answered with
 * its own trouble (5xx), overloaded (429) or too slow (408), as a crashed or restarting engine
 * does. A simulated engine's declared fault stands for these. Any other 4xx or a malformed
 * answer is the request's or the engine's protocol fault: asking again, or another engine,
 * cannot help.
 */
import { EngineHttpError } from './http/errors';
import { SimulatedEngineFault } from './simulated/faults';

export function engineMayRecover(error: unknown): boolean {
  if (error instanceof EngineHttpError) return error.status === undefined || error.status < 400 || error.status >= 500 || error.status === 408 || error.status === 429;
  return error instanceof SimulatedEngineFault;
}
