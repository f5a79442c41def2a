/**
 * What the workflow bundle evaluates: every workflow the worker creates evaluates each module of
 * the bundle again, so a module that builds zod schemas costs every iteration's first workflow
 * task its construction (the engine schemas of src/engines/types.ts took 10-35 ms of each,
 * docs/benchmarks.md). Only the run's update validators (src/workflows/signals.ts) build schemas.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { workflowBundle } from '../helpers/pipeline';

const ROOT = path.join(__dirname, '..', '..');
const SCHEMA_MODULES_ALLOWED = ['src/workflows/signals.ts'];

describe('the workflow bundle', () => {
  it('holds no module that builds zod schemas but the run’s update validators', async () => {
    const code = readFileSync((await workflowBundle()).codePath, 'utf8');
    const modules = [...new Set([...code.matchAll(/"\.\/(src\/[^"]+\.ts)"/g)].map((match) => match[1]!))];
    expect(modules).toContain('src/workflows/iteration.ts');
    expect(modules).toContain('src/engines/memoryTags.ts');
    const buildingSchemas = modules.filter((module) => /(?:from|require\(|import\()\s*['"]zod['"]/.test(readFileSync(path.join(ROOT, module), 'utf8')));
    expect(buildingSchemas).toEqual(SCHEMA_MODULES_ALLOWED);
  }, 600_000);
});
