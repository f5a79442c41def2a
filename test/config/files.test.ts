import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRunConfigFile, resolveRunId, slugify } from '../../src/config';
import { configErrorOf } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'timeshare-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const VALID_YAML = `pool:
  nodes: 1
  gpusPerNode: 8
strategy: multiplexed
train:
  gpus: "0-3"
batchSize: 16
`;

describe('loadRunConfigFile', () => {
  it('loads .yaml, .yml and .json', () => {
    expect(loadRunConfigFile(write('a.yaml', VALID_YAML)).layout.ranks).toHaveLength(8);
    expect(loadRunConfigFile(write('a.yml', VALID_YAML)).layout.ranks).toHaveLength(8);
    const json = JSON.stringify({ pool: { nodes: 1, gpusPerNode: 8 }, strategy: 'multiplexed', train: { gpus: [0, 1] }, batchSize: 4 });
    expect(loadRunConfigFile(write('a.json', json)).layout.trainGpus).toEqual([0, 1]);
  });

  it('rejects other extensions', () => {
    const file = write('run.toml', 'x = 1');
    const error = configErrorOf(() => loadRunConfigFile(file));
    expect(error.source).toBe(file);
    expect(error.issues).toEqual([{ path: '', message: 'unsupported file extension ".toml": expected one of .yaml, .yml, .json' }]);
    expect(error.message).toBe(`Invalid run configuration ${file}:\n  - unsupported file extension ".toml": expected one of .yaml, .yml, .json`);
    expect(configErrorOf(() => loadRunConfigFile(write('noext', VALID_YAML))).issues[0]?.message).toContain('unsupported file extension ""');
  });

  it('a missing file', () => {
    const file = path.join(dir, 'nope.yaml');
    const error = configErrorOf(() => loadRunConfigFile(file));
    expect(error.source).toBe(file);
    expect(error.issues).toEqual([{ path: '', message: 'file not found' }]);
    expect(error.message).toContain(`Invalid run configuration ${file}:\n  - file not found`);
  });

  it('a directory', () => {
    const sub = path.join(dir, 'sub.yaml');
    mkdirSync(sub);
    expect(configErrorOf(() => loadRunConfigFile(sub)).issues[0]?.message).toContain('is a directory');
  });

  it('a YAML syntax error names the file and the line', () => {
    const file = write('broken.yaml', 'pool:\n  nodes: 1\n  gpusPerNode: [8\nstrategy: multiplexed\n');
    const error = configErrorOf(() => loadRunConfigFile(file));
    expect(error.source).toBe(file);
    expect(error.issues.length).toBeGreaterThanOrEqual(1);
    const first = error.issues[0];
    expect(first?.path).toBe('');
    expect(first?.message).toMatch(/^YAML syntax error: .* at line \d+, column \d+$/);
    expect(first?.line).toBe(4);
    expect(error.message).toContain(`Invalid run configuration ${file}:\n  - YAML syntax error:`);
    expect(error.message).toContain('[line 4]');
  });

  it('duplicate YAML keys are a syntax error', () => {
    const file = write('dup.yaml', `${VALID_YAML}batchSize: 32\n`);
    const error = configErrorOf(() => loadRunConfigFile(file));
    expect(error.issues[0]?.message).toMatch(/YAML syntax error: Map keys must be unique.*line 8/);
    expect(error.issues[0]?.line).toBe(8);
  });

  it('a JSON syntax error names the line', () => {
    const file = write('broken.json', '{\n  "pool": {"nodes": 1,\n  }\n}\n');
    const error = configErrorOf(() => loadRunConfigFile(file));
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]?.message).toMatch(/^JSON syntax error at line 3, column 3: /);
    expect(error.issues[0]?.line).toBe(3);
  });

  it('an empty file', () => {
    const error = configErrorOf(() => loadRunConfigFile(write('empty.yaml', '# nothing\n')));
    expect(error.issues[0]?.message).toContain('the file is empty');
  });

  it('field issues in a YAML file carry the line of the key', () => {
    const file = write('bad.yaml', `pool:\n  nodes: 1\n  gpusPerNode: 0\nstrategy: multiplexed\ntrain:\n  gpus: [0, 1, 99]\nbatchSize: 16\ntrainBatch: 3\n`);
    const error = configErrorOf(() => loadRunConfigFile(file));
    expect(error.issues).toEqual([
      { path: 'pool.gpusPerNode', message: 'expected an integer in [1, 64] (got 0)', line: 3 },
      { path: 'trainBatch', message: 'unknown key', line: 8 },
    ]);
    expect(error.message).toBe(
      `Invalid run configuration ${file}:\n` +
        '  - pool.gpusPerNode: expected an integer in [1, 64] (got 0) [line 3]\n' +
        '  - trainBatch: unknown key [line 8]',
    );
    const fixed = write('bad2.yaml', `pool:\n  nodes: 1\n  gpusPerNode: 8\nstrategy: multiplexed\ntrain:\n  gpus: [0, 1, 99]\nbatchSize: 16\n`);
    expect(configErrorOf(() => loadRunConfigFile(fixed)).issues).toEqual([
      { path: 'train.gpus[2]', message: expect.stringContaining('GPU 99 is outside the pool') as unknown, line: 6 },
    ]);
  });

  it('a missing field points at its parent key', () => {
    const file = write('missing.yaml', `pool:\n  nodes: 1\nstrategy: multiplexed\ntrain:\n  gpus: "0-3"\nbatchSize: 16\n`);
    expect(configErrorOf(() => loadRunConfigFile(file)).issues).toEqual([
      { path: 'pool.gpusPerNode', message: 'required field is missing (expected an integer in [1, 64])', line: 1 },
    ]);
  });
});

describe('resolveRunId', () => {
  it('uses run.id when set, else the file name if it is a run id; refuses to change a name that is not', () => {
    const withId = loadRunConfigFile(write('x.yaml', `${VALID_YAML}run:\n  id: exp-7\n`));
    expect(resolveRunId(withId.config, '/any/where/x.yaml')).toBe('exp-7');
    const { config } = loadRunConfigFile(write('my-run-2.yaml', VALID_YAML));
    expect(resolveRunId(config, path.join(dir, 'my-run-2.yaml'))).toBe('my-run-2');
    const refused = configErrorOf(() => resolveRunId(config, path.join(dir, 'My Run_2.yaml')));
    expect(refused.issues).toHaveLength(1);
    expect(refused.issues[0]?.path).toBe('run.id');
    expect(refused.issues[0]?.message).toMatch(/file name 'My Run_2' is not a run id .*set run.id, e.g. 'run: \{ id: my-run-2 \}'/);
  });

  it('suggests the key meant for an unknown one', () => {
    const error = configErrorOf(() => loadRunConfigFile(write('typo.yaml', VALID_YAML.replace('batchSize', 'batchsize') + 'rollout:\n  maxConcurentSamples: 8\n  frobnicate: 1\n')));
    const messages = Object.fromEntries(error.issues.map((issue) => [issue.path, issue.message]));
    expect(messages.batchsize).toBe("unknown key (did you mean 'batchSize'?)");
    expect(messages['rollout.maxConcurentSamples']).toBe("unknown key (did you mean 'maxConcurrentSamples'?)");
    expect(messages['rollout.frobnicate']).toBe('unknown key');
  });

  it('refuses a YAML alias bomb as a config error', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefghi'.split('').map((name, i) => `${name}: &${name} [${Array(10).fill(`*${'abcdefghi'[i]}`).join(', ')}]`)].join('\n');
    const error = configErrorOf(() => loadRunConfigFile(write('bomb.yaml', `${bomb}\n`)));
    expect(error.issues[0]?.message).toMatch(/YAML aliases expand too much/);
  });

  it('states the live-sample limit in the config: maxConcurrentSamples and the default it derives', () => {
    const tooMany = configErrorOf(() => loadRunConfigFile(write('many.yaml', `${VALID_YAML}rollout:\n  maxConcurrentSamples: 1000000000000\n`)));
    expect(tooMany.issues.map((issue) => issue.path)).toContain('rollout.maxConcurrentSamples');
    expect(tooMany.message).toMatch(/expected an integer in \[1, 1000000\]/);
  });

  it('slugify always yields a valid run id', () => {
    expect(slugify('--Seed 160!!')).toBe('seed-160');
    expect(slugify('???')).toBe('run');
    const long = slugify(`${'a'.repeat(62)}-b-${'c'.repeat(10)}`);
    expect(long).toMatch(/^[a-z0-9][a-z0-9-]{0,62}$/);
    expect(long.endsWith('-')).toBe(false);
  });
});
