/**
 * The real `bin/timeshare` CLI as a child process: run to its end (runCli), or started with its
 * output captured so a test can wait for a line, and SIGKILL to end it abruptly (startCli).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { spawnOwned } from '../../src/process/owned';

export const BIN = path.join(__dirname, '..', '..', 'bin', 'timeshare');

export interface Proc {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first output line matching `pattern`; rejects on exit or timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

export function startCli(args: string[], options: { cwd?: string } = {}): Proc {
  // Owned: the CLI (and so what it starts) ends with the test process, however that one ends.
  const child = spawnOwned({ command: BIN, args }, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    text += chunk.toString();
    for (const listener of listeners) listener();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => text,
    exited,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    waitFor(pattern, timeoutMs = 300_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = text.split('\n').find((candidate) => pattern.test(candidate));
          if (line !== undefined) {
            cleanup();
            resolve(line);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}; output:\n${text.slice(-3000)}`));
        }, timeoutMs);
        const onExit = () => {
          check();
          cleanup();
          reject(new Error(`process exited before ${pattern}; output:\n${text.slice(-3000)}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', onExit);
        };
        listeners.add(check);
        child.once('exit', onExit);
        check();
      });
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout then stderr. */
  out: string;
}

/** Runs `bin/timeshare` to its end; a non-zero exit is a result, not an error. */
export async function runCli(args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  const run = promisify(execFile);
  try {
    const { stdout, stderr } = await run(BIN, args, { cwd: options.cwd, timeout: options.timeoutMs ?? 120_000, env: { ...process.env, ...options.env } });
    return { code: 0, stdout, stderr, out: stdout + stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr, out: failed.stdout + failed.stderr };
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids still alive after up to `ms` (polling; returns as soon as all are gone). */
export async function survivorsAfter(pids: readonly number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = pids.filter(alive);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Attempts of `startDevOnFreePorts` when a port probed free was taken before the server bound it. */
const PORT_RACE_ATTEMPTS = 3;

/**
 * Starts `timeshare dev` with ports a test picked (`makeArgs` picks new ones on each call) and
 * waits for `ready`. A port probed free can be taken by another process (another test's server)
 * before the dev server binds it; `dev` then exits naming the port in use, as it should for an
 * operator's ports, and the test starts it again on new ones.
 */
export async function startDevOnFreePorts(makeArgs: () => Promise<string[]>, ready: RegExp, timeoutMs?: number): Promise<{ proc: Proc; args: string[] }> {
  for (let attempt = 1; ; attempt++) {
    const args = await makeArgs();
    const proc = startCli(args);
    try {
      await proc.waitFor(ready, timeoutMs);
      return { proc, args };
    } catch (error) {
      proc.kill('SIGKILL');
      await proc.exited;
      if (attempt >= PORT_RACE_ATTEMPTS || !/address already in use/.test(proc.output())) throw error;
    }
  }
}
