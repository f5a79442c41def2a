/**
 * The workflow bundle cache (src/workers/bundle.ts): the code version is a hash of exactly what
 * goes into the bundle, a cached bundle is reused, and an older cached bundle keeps its build id.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleBuildId, buildIdOfHash, cachedBundleOf, cachedWorkflowBundle, currentBuildId, workflowSources } from '../../src/workers/bundle';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A tiny package: entry → ./a → ../lib/b (and a type-only import), plus an unrelated file. */
function tinyPackage(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-bundle-'));
  dirs.push(dir);
  mkdirSync(path.join(dir, 'src', 'lib'), { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), '{}');
  writeFileSync(path.join(dir, 'package-lock.json'), '{"lockfileVersion": 3}');
  writeFileSync(path.join(dir, 'src', 'index.ts'), "export { a } from './a';\nimport type { T } from './types';\nexport type U = T;\n");
  writeFileSync(path.join(dir, 'src', 'a.ts'), "import { b } from '../src/lib/b';\nimport { z } from 'zod';\nexport const a = () => [b, z];\n");
  writeFileSync(path.join(dir, 'src', 'types.ts'), 'export type T = number;\n');
  writeFileSync(path.join(dir, 'src', 'lib', 'b.ts'), 'export const b = 1;\n');
  writeFileSync(path.join(dir, 'src', 'unrelated.ts'), 'export const c = 2;\n');
  return dir;
}

describe('workflow bundle cache', () => {
  it('hashes the entry, its local imports transitively (type imports too) and the lock file, nothing else', () => {
    const dir = tinyPackage();
    const entry = path.join(dir, 'src', 'index.ts');
    const before = workflowSources(entry);
    expect(before.files).toEqual(['package-lock.json', 'src/a.ts', 'src/index.ts', 'src/lib/b.ts', 'src/types.ts']);
    writeFileSync(path.join(dir, 'src', 'unrelated.ts'), 'export const c = 3;\n');
    expect(workflowSources(entry).hash).toBe(before.hash);
    writeFileSync(path.join(dir, 'src', 'lib', 'b.ts'), 'export const b = 2;\n');
    const afterImport = workflowSources(entry).hash;
    expect(afterImport).not.toBe(before.hash);
    writeFileSync(path.join(dir, 'package-lock.json'), '{"lockfileVersion": 3, "packages": {}}');
    expect(workflowSources(entry).hash).not.toBe(afterImport);
  });

  it('covers the payload converter: bundled with one, or with another, is another code version', () => {
    const dir = tinyPackage();
    const entry = path.join(dir, 'src', 'index.ts');
    writeFileSync(path.join(dir, 'src', 'converter.ts'), "import { b } from './lib/b';\nexport const payloadConverter = b;\n");
    const without = workflowSources(entry);
    const withConverter = workflowSources({ workflowsPath: entry, payloadConverterPath: path.join(dir, 'src', 'converter.ts') });
    expect(withConverter.files).toEqual(['package-lock.json', 'src/a.ts', 'src/converter.ts', 'src/index.ts', 'src/lib/b.ts', 'src/types.ts']);
    expect(withConverter.hash).not.toBe(without.hash);
    writeFileSync(path.join(dir, 'src', 'converter.ts'), "import { b } from './lib/b';\nexport const payloadConverter = [b];\n");
    expect(workflowSources({ workflowsPath: entry, payloadConverterPath: path.join(dir, 'src', 'converter.ts') }).hash).not.toBe(withConverter.hash);
    expect(workflowSources(entry).hash).toBe(without.hash);
  });

  it('covers the preloaded modules: preloading one, or changing it, is another code version', () => {
    const dir = tinyPackage();
    const entry = path.join(dir, 'src', 'index.ts');
    writeFileSync(path.join(dir, 'src', 'shared.ts'), "import { b } from './lib/b';\nexport const shared = b;\n");
    const preloadModules = [path.join(dir, 'src', 'shared.ts')];
    const without = workflowSources(entry);
    const withPreload = workflowSources({ workflowsPath: entry, preloadModules });
    expect(withPreload.files).toEqual(['package-lock.json', 'src/a.ts', 'src/index.ts', 'src/lib/b.ts', 'src/shared.ts', 'src/types.ts']);
    expect(withPreload.hash).not.toBe(without.hash);
    writeFileSync(path.join(dir, 'src', 'shared.ts'), "import { b } from './lib/b';\nexport const shared = [b];\n");
    expect(workflowSources({ workflowsPath: entry, preloadModules }).hash).not.toBe(withPreload.hash);
  });

  it('names an import it cannot resolve', () => {
    const dir = tinyPackage();
    writeFileSync(path.join(dir, 'src', 'a.ts'), "import { gone } from './gone';\nexport const a = gone;\n");
    expect(() => workflowSources(path.join(dir, 'src', 'index.ts'))).toThrow(/cannot resolve import '\.\/gone' from .*a\.ts/);
  });

  it('builds a bundle once per code version and reuses it; a cached file keeps its build id', async () => {
    const cache = mkdtempSync(path.join(os.tmpdir(), 'timeshare-bundle-cache-'));
    dirs.push(cache);
    const entry = path.join(__dirname, '..', 'fixtures', 'versioning', 'v2Workflows.ts');
    const first = await cachedWorkflowBundle(entry, cache);
    expect(first.built).toBe(true);
    expect(existsSync(first.codePath)).toBe(true);
    expect(path.basename(first.codePath)).toBe(`${workflowSources(entry).hash}.js`);
    expect(currentBuildId(entry)).toBe(first.buildId);
    expect(cachedBundleOf(first.buildId, cache)).toBe(first.codePath);
    const second = await cachedWorkflowBundle(entry, cache);
    expect(second).toEqual({ ...first, built: false });
    expect(bundleBuildId({ codePath: first.codePath })).toBe(first.buildId);
    expect(bundleBuildId({ code: 'x' })).toMatch(/^[0-9a-f]{16}$/);
    expect(bundleBuildId({ code: 'x' })).not.toBe(bundleBuildId({ code: 'y' }));
  }, 600_000);
});

describe('a cached bundle found by its build id', () => {
  it('finds the one cached file whose hash begins with the build id, and nothing for another id or a missing folder', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-bundle-cache-'));
    dirs.push(dir);
    const hash = 'ab'.repeat(32);
    writeFileSync(path.join(dir, `${hash}.js`), '// bundle');
    writeFileSync(path.join(dir, `${hash}.js.123.partial`), '// half written');
    writeFileSync(path.join(dir, `${'cd'.repeat(32)}.txt`), 'not a bundle');
    expect(cachedBundleOf(buildIdOfHash(hash), dir)).toBe(path.join(dir, `${hash}.js`));
    expect(bundleBuildId({ codePath: cachedBundleOf(buildIdOfHash(hash), dir)! })).toBe(buildIdOfHash(hash));
    expect(cachedBundleOf(buildIdOfHash('cd'.repeat(32)), dir)).toBeUndefined();
    expect(cachedBundleOf(buildIdOfHash(hash), path.join(dir, 'absent'))).toBeUndefined();
  });
});
