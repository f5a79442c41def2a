/** File-system basics shared by the store and the simulated engines' state files. */
import { statSync } from 'node:fs';

/** The `code` of a Node.js system error (ENOENT, EEXIST, ...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** Whether a file exists (synchronous: microseconds on a local file system); an error other than its absence is thrown. */
export function fileExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}
