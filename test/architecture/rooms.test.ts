/**
 * The module map's rule (docs/design.md §2): no two rooms (top-level folders of src/) import each
 * other, and the tools in scripts/ import src/, never test/.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.join(__dirname, '..', '..');

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return tsFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

/** Relative import specifiers of a file ('./x', '../y/z'), resolved to repository paths. */
function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/from '(\.{1,2}\/[^']+)'/g)].map((match) => path.relative(ROOT, path.resolve(path.dirname(file), match[1]!)));
}

const roomOf = (repoPath: string): string | undefined => {
  const parts = repoPath.split(path.sep);
  return parts[0] === 'src' && parts.length > 2 ? parts[1] : undefined;
};

describe('module map', () => {
  it('has no pair of rooms that import each other', () => {
    const edges = new Map<string, Set<string>>();
    const example = new Map<string, string>();
    for (const file of tsFiles(path.join(ROOT, 'src'))) {
      const from = roomOf(path.relative(ROOT, file));
      if (from === undefined) continue;
      for (const target of relativeImports(file)) {
        const to = roomOf(target);
        if (to === undefined || to === from) continue;
        if (!edges.has(from)) edges.set(from, new Set());
        edges.get(from)!.add(to);
        example.set(`${from}->${to}`, `${path.relative(ROOT, file)} imports ${target}`);
      }
    }
    const cycles: string[] = [];
    for (const [from, targets] of edges) {
      for (const to of targets) {
        if (from < to && edges.get(to)?.has(from)) cycles.push(`${from} <-> ${to}: ${example.get(`${from}->${to}`)}; ${example.get(`${to}->${from}`)}`);
      }
    }
    expect(cycles).toEqual([]);
    // The rule holds on something: rooms do import one another one way.
    expect(edges.get('cli')?.has('launch')).toBe(true);
  });

  it('scripts import src, never test', () => {
    const offending = tsFiles(path.join(ROOT, 'scripts')).flatMap((file) =>
      relativeImports(file)
        .filter((target) => target.split(path.sep)[0] === 'test')
        .map((target) => `${path.relative(ROOT, file)} imports ${target}`),
    );
    expect(offending).toEqual([]);
  });
});
