/**
 * What the workflow bundle evaluates: every workflow the worker creates evaluates each module of
 * the bundle again, except the preloaded ones (evaluated once per worker thread), so a module that
 * loads zod or builds schemas costs every iteration's first workflow task (the engine schemas of
 * src/engines/types.ts took 10-35 ms of each, zod itself about 6 ms; docs/benchmarks.md). zod is
 * preloaded; only the run's update validators (src/workflows/signals.ts) build schemas, at the
 * first update.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { workflowBundle } from '../helpers/pipeline';

const ROOT = path.join(__dirname, '..', '..');
const ZOD_MODULES_ALLOWED = ['src/workflows/preloaded.ts', 'src/workflows/signals.ts'];

describe('the workflow bundle', () => {
  it('imports zod only in the preloaded module and the run’s update validators', async () => {
    const code = readFileSync((await workflowBundle()).codePath, 'utf8');
    const modules = [...new Set([...code.matchAll(/"\.\/(src\/[^"]+\.ts)"/g)].map((match) => match[1]!))];
    expect(modules).toContain('src/workflows/iteration.ts');
    expect(modules).toContain('src/engines/memoryTags.ts');
    const importingZod = modules.filter((module) => /(?:from|require\(|import\()\s*['"]zod['"]/.test(readFileSync(path.join(ROOT, module), 'utf8')));
    expect(importingZod.sort()).toEqual(ZOD_MODULES_ALLOWED);
  }, 600_000);

  it('preloads zod through a module that keeps it (a bare preload of a side-effect-free package is dropped)', async () => {
    const code = readFileSync((await workflowBundle()).codePath, 'utf8');
    const preload = /exports\.preloadModules = function preloadModules\(\) \{([^}]*)\}/.exec(code)?.[1];
    expect(preload).toContain('"./src/workflows/preloaded.ts"');
    const preloadedModule = code.slice(code.indexOf('"./src/workflows/preloaded.ts"\n'));
    expect(preloadedModule.slice(0, 2000)).toMatch(/__webpack_require__\(\/\*! zod \*\/ "\.\/node_modules\/zod\//);
  }, 600_000);
});
