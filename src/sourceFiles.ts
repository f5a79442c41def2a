/**
 * Where the project's own files are, whether this code runs from src/ (TypeScript under tsx or
 * vitest) or from dist/src/ (compiled by scripts/build.sh): the repository root and a module
 * of ours by path (src/launch/entry.ts starts processes on them).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

/** True when running the compiled JavaScript in dist/. */
export const COMPILED = path.extname(__filename) === '.js';

/** A module of ours by path without extension: the .ts source, or the compiled .js. */
export function moduleFile(...segments: string[]): string {
  return `${path.join(...segments)}${COMPILED ? '.js' : '.ts'}`;
}

/** The repository root (the folder with package.json above this module, from src/ or dist/src/). */
export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'src'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json with a src/ folder above ${__dirname}`);
  }
}
