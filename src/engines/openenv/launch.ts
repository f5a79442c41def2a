/**
 * Starts the OpenEnv test environment (engines/openenv-env: the vault task on OpenEnv's server)
 * as a child process and waits until it serves. Used by the tests, scripts/reference-engines.ts
 * and the supervisor of configured server commands. Python from the venv
 * scripts/ensure-python.sh builds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT, referencePython } from '../reference/launch';

export const OPENENV_ENV_DIR = path.join(REPO_ROOT, 'engines', 'openenv-env');

export interface OpenEnvServerOptions {
  /** 0 (default): a free port. */
  port?: number;
  turns?: number;
  shift?: number;
  maxSessions?: number;
  startTimeoutMs?: number;
}

export interface ServerProcess {
  url: string;
  pid: number;
  output(): string;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process has exited. */
  stop(): Promise<void>;
  /** Kills it at once (tests: a server crash). */
  kill(): Promise<void>;
  /** Resolves when the process has exited, for whatever reason. */
  exited: Promise<void>;
  running(): boolean;
}

export function startOpenEnvServer(options: OpenEnvServerOptions = {}): Promise<ServerProcess> {
  const args = ['-m', 'timeshare_openenv', '--port', String(options.port ?? 0)];
  if (options.turns !== undefined) args.push('--turns', String(options.turns));
  if (options.shift !== undefined) args.push('--shift', String(options.shift));
  if (options.maxSessions !== undefined) args.push('--max-sessions', String(options.maxSessions));
  return startServerProcess([referencePython(), ...args], { cwd: OPENENV_ENV_DIR, name: 'OpenEnv environment server', startTimeoutMs: options.startTimeoutMs ?? 120_000 });
}

/**
 * Spawns `argv` and resolves once it prints `READY <port>` (or, with `url`, once `url`/health
 * answers 200): a process that exits or stays silent past the timeout is an error with its output.
 */
export async function startServerProcess(
  argv: readonly string[],
  options: { cwd?: string; name: string; startTimeoutMs: number; url?: string; env?: NodeJS.ProcessEnv },
): Promise<ServerProcess> {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error(`${options.name}: empty command`);
  const child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  let text = '';
  child.stdout.on('data', (chunk: Buffer) => (text = (text + chunk.toString()).slice(-20_000)));
  child.stderr.on('data', (chunk: Buffer) => (text = (text + chunk.toString()).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const running = () => child.exitCode === null && child.signalCode === null;
  const stop = async () => {
    if (!running()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const kill = async () => {
    if (!running()) return;
    child.kill('SIGKILL');
    await exited;
  };
  try {
    const url = await waitUntilServing(child, () => text, options);
    return { url, pid: child.pid ?? -1, output: () => text, stop, kill, exited, running };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitUntilServing(child: ChildProcess, output: () => string, options: { name: string; startTimeoutMs: number; url?: string }): Promise<string> {
  const deadline = Date.now() + options.startTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${options.name} exited (${child.exitCode ?? child.signalCode}) before serving; output:\n${output().slice(-3000)}`);
    }
    if (options.url === undefined) {
      const match = /^READY (\d+)$/m.exec(output());
      if (match !== null) return `http://127.0.0.1:${match[1]}`;
    } else if (await healthy(options.url)) {
      return options.url;
    }
    if (Date.now() > deadline) throw new Error(`${options.name} did not serve within ${options.startTimeoutMs} ms; output:\n${output().slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** GET <url>/health answers 2xx. */
export async function healthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url.replace(/\/+$/, '')}/health`, { signal: AbortSignal.timeout(2000) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}
