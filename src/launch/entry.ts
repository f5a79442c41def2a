/**
 * How a `timeshare` subcommand is started as a child process (worker processes of `dev`, `chaos`
 * and the control-plane bench). The one place that knows how the CLI's entry is invoked: the
 * compiled JavaScript in dist/ when this code runs compiled (bin/timeshare), else the TypeScript
 * source through the tsx loader (tests, `npx tsx`).
 */
import type { Invocation } from '../process/owned';
import { COMPILED, moduleFile } from '../sourceFiles';

const CLI_MAIN = moduleFile(__dirname, '..', 'cli', 'main');
/** The tsx loader by absolute path, so a child starts whatever its working directory. */
const TSX_LOADER = `file://${require.resolve('tsx')}`;

/** Node arguments that run an entry module of ours: compiled as is, TypeScript through tsx. */
export function nodeArgsFor(entry: string): string[] {
  return COMPILED ? [entry] : ['--import', TSX_LOADER, entry];
}

/** The command line that runs a TypeScript file of this repository: this Node with the tsx loader. */
export function typeScriptInvocation(file: string, args: readonly string[]): Invocation {
  return { command: process.execPath, args: ['--import', TSX_LOADER, file, ...args] };
}

/** The command line that runs `timeshare <args>`. */
export function timeshareInvocation(args: readonly string[]): Invocation {
  return { command: process.execPath, args: [...nodeArgsFor(CLI_MAIN), ...args] };
}

/** What a worker started by `timeshareInvocation` has on its command line (to recognise our leftovers). */
export const TIMESHARE_MARKER = CLI_MAIN;
