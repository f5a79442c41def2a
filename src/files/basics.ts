/** File-system basics shared by the store and the simulated engines' state files. */
import { randomBytes } from 'node:crypto';
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

/**
 * Unique per process (a random prefix, for hosts sharing the file system) and per call (a
 * counter): a write drew 6 random bytes before, a measurable share of a turn's checkpoint.
 */
const processUnique = randomBytes(6).toString('hex');
let uniqueSerial = 0;
export function uniqueSuffix(): string {
  uniqueSerial += 1;
  return `${process.pid}.${processUnique}${uniqueSerial.toString(36)}`;
}
