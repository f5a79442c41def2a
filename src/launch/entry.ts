/**
 * How a `timeshare` subcommand is started as a child process (worker processes of `dev`, `chaos`
 * and the control-plane bench). The one place that knows how the CLI's entry is invoked.
 */
import path from 'node:path';
import type { Invocation } from '../process/owned';

const CLI_MAIN = path.join(__dirname, '..', 'cli', 'main.ts');
/** The tsx loader by absolute path, so a child starts whatever its working directory. */
const TSX_LOADER = `file://${require.resolve('tsx')}`;

/** The command line that runs a TypeScript file of this repository: this Node with the tsx loader. */
export function typeScriptInvocation(file: string, args: readonly string[]): Invocation {
  return { command: process.execPath, args: ['--import', TSX_LOADER, file, ...args] };
}

/** The command line that runs `timeshare <args>`. */
export function timeshareInvocation(args: readonly string[]): Invocation {
  return typeScriptInvocation(CLI_MAIN, args);
}

/** What a worker started by `timeshareInvocation` has on its command line (to recognise our leftovers). */
export const TIMESHARE_MARKER = CLI_MAIN;
