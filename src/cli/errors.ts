/**
 * The CLI's own errors: a message for the user and the exit code (src/cli/exitCodes.ts). Free of
 * the Temporal SDK, so that any command can throw one without loading it.
 */
import { EXIT } from './exitCodes';

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.error,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The server did not answer (not a refusal): a watcher may wait for it (src/cli/watch.ts). */
export class ServerUnreachableError extends CliError {
  constructor(message: string) {
    super(message, EXIT.serverUnreachable);
    this.name = 'ServerUnreachableError';
  }
}
