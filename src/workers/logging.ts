/**
 * The Temporal runtime's logger in our processes (installed by telemetry.ts). The SDK logs
 * "No workflows registered, not polling for workflow tasks" at WARN for every worker that serves
 * only activities: by design every rank and trainer queue of a gpu-node has one (about 80 lines in
 * a test run), and it tells a user nothing. We log it at DEBUG; every other message keeps its level.
 */
import { DefaultLogger, type LogLevel, type LogMetadata } from '@temporalio/worker';

const EXPECTED_FOR_ACTIVITY_WORKERS = 'No workflows registered, not polling for workflow tasks';

export class TimeshareLogger extends DefaultLogger {
  override log(level: LogLevel, message: string, meta?: LogMetadata): void {
    super.log(message === EXPECTED_FOR_ACTIVITY_WORKERS ? 'DEBUG' : level, message, meta);
  }
}
