import { expect } from 'vitest';
import { ConfigError, parseRunConfig } from '../../src/config';
import type { ConfigIssue, ParsedRunConfig } from '../../src/config';

/** A minimal valid configuration: 1 node × 8 GPUs, multiplexed, train group 0-3. */
export function base(): Record<string, unknown> {
  return { pool: { nodes: 1, gpusPerNode: 8 }, strategy: 'multiplexed', train: { gpus: '0-3' }, batchSize: 16 };
}

/** `base()` with top-level keys replaced (a value of undefined deletes the key). */
export function withKeys(overrides: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base(), ...overrides };
  for (const [key, value] of Object.entries(overrides)) if (value === undefined) delete out[key];
  return out;
}

export function configErrorOf(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

export function parse(raw: unknown): ParsedRunConfig {
  return parseRunConfig(raw, 'test.yaml');
}

export interface ExpectedIssue {
  path: string;
  /** Substrings (or patterns) the issue's message must contain. */
  message: (string | RegExp)[];
}

/**
 * Asserts `raw` is rejected with exactly these issues (by path, in any order), each message naming
 * the rule, and that the rendered error lists each one as `  - path: message`.
 */
export function expectIssues(raw: unknown, expected: ExpectedIssue[], options: { exact?: boolean } = {}): ConfigError {
  const error = configErrorOf(() => parseRunConfig(raw, 'test.yaml'));
  expect(error.source).toBe('test.yaml');
  expect(error.message.startsWith('Invalid run configuration test.yaml:\n')).toBe(true);
  if (options.exact ?? true) {
    expect(error.issues.map((i) => i.path).sort()).toEqual(expected.map((e) => e.path).sort());
  }
  for (const want of expected) {
    const issue = error.issues.find((i: ConfigIssue) => i.path === want.path);
    expect(issue, `no issue at ${want.path}; got ${JSON.stringify(error.issues)}`).toBeDefined();
    for (const part of want.message) {
      if (typeof part === 'string') expect(issue?.message).toContain(part);
      else expect(issue?.message).toMatch(part);
    }
    const line = want.path === '' ? `  - ${issue?.message}` : `  - ${want.path}: ${issue?.message}`;
    expect(error.message.split('\n')).toContain(line);
  }
  return error;
}
