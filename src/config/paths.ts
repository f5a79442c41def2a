/** Where the shipped configurations are; Node only, so the CLI's help can name the default without loading the schema. */
import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * The examples directory shipped with the project (examples/multiplexed.yaml is the embedded
 * dev default). Found by walking up from this module, so it works from src/ and from dist/.
 */
export function examplesDir(): string {
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'examples');
    if (existsSync(path.join(candidate, 'multiplexed.yaml'))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`examples/ not found above ${__dirname}`);
    dir = parent;
  }
}

/** Path of the embedded dev default configuration (examples/multiplexed.yaml). */
export function defaultConfigPath(): string {
  return path.join(examplesDir(), 'multiplexed.yaml');
}
