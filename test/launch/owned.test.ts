/**
 * No orphans: a Temporal dev server and worker processes started through the launcher exit when
 * the process that started them is SIGKILLed (no exit handler of the parent runs). Real
 * processes; the parent is test/fixtures/ownerProcess.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endingWithParent } from '../../src/process/owned';
import { typeScriptInvocation } from '../../src/launch/entry';
import { smallConfig } from '../helpers/pipeline';
import { alive, survivorsAfter } from '../helpers/processes';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'ownerProcess.ts');

/** Starts the fixture parent; resolves with it and the pids it prints. */
async function startParent<T>(args: string[], timeoutMs: number): Promise<{ parent: ChildProcess; exited: Promise<void>; pids: T }> {
  const invocation = typeScriptInvocation(FIXTURE, args);
  const parent = spawn(invocation.command, invocation.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  parent.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => parent.once('exit', () => resolve()));
  try {
    const pids = await new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no pids in ${timeoutMs} ms; output:\n${output}`)), timeoutMs);
      parent.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const match = /^PIDS (.*)$/m.exec(output);
        if (match === null) return;
        clearTimeout(timer);
        resolve(JSON.parse(match[1]!) as T);
      });
      parent.once('exit', () => reject(new Error(`parent exited early; output:\n${output}`)));
    });
    return { parent, exited, pids };
  } catch (error) {
    parent.kill('SIGKILL');
    throw error;
  }
}

describe('children end with their parent', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-owned-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('wraps the command so the kernel signals the child when its parent dies (Linux)', () => {
    const wrapped = endingWithParent({ command: '/bin/true', args: ['x'] });
    if (process.platform === 'linux') {
      expect(wrapped.args.slice(0, 3)).toEqual(['--pdeathsig', 'TERM', '--']);
      expect(wrapped.args.slice(3)).toEqual(['/bin/true', 'x']);
    } else {
      expect(wrapped).toEqual({ command: '/bin/true', args: ['x'] });
    }
  });

  it.runIf(process.platform === 'linux')('SIGKILL of the parent: an owned child exits', async () => {
    const { parent, exited, pids } = await startParent<{ sleep: number }>(['sleep'], 120_000);
    expect(alive(pids.sleep)).toBe(true);
    parent.kill('SIGKILL');
    await exited;
    const left = await survivorsAfter([pids.sleep], 10_000);
    for (const pid of left) process.kill(pid, 'SIGKILL');
    expect(left).toEqual([]);
  });

  it.runIf(process.platform === 'linux')('SIGKILL of the parent: its dev server and worker processes exit', async () => {
    const configFile = path.join(dir, 'owned.json');
    writeFileSync(configFile, JSON.stringify(smallConfig({ run: { id: 'owned', iterations: 1 }, store: { dir: path.join(dir, 'store') } })));
    const { parent, exited, pids } = await startParent<{ server: number; workers: number[] }>([dir, configFile], 300_000);
    const children = [pids.server, ...pids.workers];
    expect(pids.workers).toHaveLength(2);
    expect(children.every(alive)).toBe(true);
    parent.kill('SIGKILL');
    await exited;
    const left = await survivorsAfter(children, 60_000);
    for (const pid of left) process.kill(pid, 'SIGKILL');
    expect(left).toEqual([]);
  }, 600_000);
});
