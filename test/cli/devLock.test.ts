/**
 * One `timeshare dev` per state folder: a second one is refused before it touches anything (it
 * would end the first's server and workers as leftovers, and two sets of workers would serve one
 * run); a lock left by a `dev` that is gone is taken over.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startTimeOf, takeStateFolder } from '../../src/cli/dev';
import { runCli } from '../helpers/processes';

const folders: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

function stateFolder(): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'timeshare-dev-lock-'));
  folders.push(folder);
  return folder;
}

/** A live process that is not this one, holding the folder's lock as a `dev` would. */
async function heldByAnother(folder: string): Promise<number> {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  await new Promise((resolve) => child.once('spawn', resolve));
  const pid = child.pid!;
  writeFileSync(path.join(folder, 'dev.lock'), JSON.stringify({ pid, started: startTimeOf(pid) }));
  return pid;
}

describe("the state folder's lock", () => {
  it('is taken when free and released by its owner only', async () => {
    const folder = stateFolder();
    const release = await takeStateFolder(folder);
    const lock = path.join(folder, 'dev.lock');
    expect(JSON.parse(readFileSync(lock, 'utf8'))).toMatchObject({ pid: process.pid });
    await expect(takeStateFolder(folder)).rejects.toThrow(`another 'timeshare dev' (pid ${process.pid}) runs on the state folder ${folder}`);
    release();
    expect(existsSync(lock)).toBe(false);
    const again = await takeStateFolder(folder);
    again();
  });

  it("refuses while another live process holds it, and takes over one whose process is gone (or whose pid now belongs to another process)", async () => {
    const folder = stateFolder();
    const holder = await heldByAnother(folder);
    await expect(takeStateFolder(folder)).rejects.toThrow(new RegExp(`pid ${holder}\\).*stop it first .*kill -INT ${holder}.*another --state-dir`));
    children[0]!.kill('SIGKILL');
    await new Promise((resolve) => children[0]!.once('exit', resolve));
    const release = await takeStateFolder(folder);
    release();
    // A zombie (killed, not reaped yet) holds nothing either: its parent here never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 120'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(parent);
    const zombie = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()))));
    writeFileSync(path.join(folder, 'dev.lock'), JSON.stringify({ pid: zombie, started: startTimeOf(zombie) }));
    process.kill(zombie, 'SIGKILL');
    for (let i = 0; i < 200 && !readFileSync(`/proc/${zombie}/stat`, 'utf8').includes(') Z '); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(readFileSync(`/proc/${zombie}/stat`, 'utf8')).toContain(') Z ');
    (await takeStateFolder(folder))();
    // A live pid with another start time: the pid was reused, the lock is stale.
    writeFileSync(path.join(folder, 'dev.lock'), JSON.stringify({ pid: process.pid, started: '1' }));
    (await takeStateFolder(folder))();
  });

  it('a second `timeshare dev` on a held folder exits with the message before it ends or starts anything', async () => {
    const folder = stateFolder();
    const holder = await heldByAnother(folder);
    const leftovers = path.join(folder, 'dev-processes.json');
    writeFileSync(leftovers, JSON.stringify({ temporal: { pid: holder, marker: 'sleep' } }));
    const result = await runCli(['dev', 'examples/multiplexed.yaml', '--state-dir', folder], { timeoutMs: 60_000 });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`another 'timeshare dev' (pid ${holder}) runs on the state folder ${folder}`);
    expect(readFileSync(leftovers, 'utf8')).toContain(String(holder));
    expect(children[0]!.exitCode).toBeNull();
    expect(children[0]!.signalCode).toBeNull();
  }, 90_000);

  it("records its server's address: `timeline --state-dir` on a folder a `dev` holds names that address, not the default port", async () => {
    const folder = stateFolder();
    const release = await takeStateFolder(folder, '127.0.0.1:17233');
    try {
      writeFileSync(path.join(folder, 'temporal.db'), '');
      writeFileSync(path.join(folder, 'dev-processes.json'), '{}');
      const result = await runCli(['timeline', 'some-run', '--state-dir', folder], { timeoutMs: 60_000 });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`'timeshare dev' is running on ${folder}`);
      expect(result.stderr).toContain('read from its server instead with --address 127.0.0.1:17233');
    } finally {
      release();
    }
  }, 90_000);
});
