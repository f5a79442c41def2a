/**
 * How a `timeshare` subcommand is started as a child process (worker processes of `dev`, `chaos`
 * and the control-plane bench). The one place that knows how the CLI's entry is invoked.
 */
import path from 'node:path';

const CLI_MAIN = path.join(__dirname, '..', 'cli', 'main.ts');
/** The tsx loader by absolute path, so a child starts whatever its working directory. */
const TSX_LOADER = `file://${require.resolve('tsx')}`;

export interface Invocation {
  command: string;
  args: string[];
}

/** The command line that runs `timeshare <args>`: this Node with the tsx loader over the TypeScript CLI. */
export function timeshareInvocation(args: readonly string[]): Invocation {
  return { command: process.execPath, args: ['--import', TSX_LOADER, CLI_MAIN, ...args] };
}

/** What a worker started by `timeshareInvocation` has on its command line (to recognise our leftovers). */
export const TIMESHARE_MARKER = CLI_MAIN;
