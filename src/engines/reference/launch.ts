/**
 * Starts the reference engine (engines/reference, Python + PyTorch) as a child process and
 * waits until it serves. Used by the tests, the reference RL benchmark and
 * scripts/reference-engines.ts. The Python comes from the venv scripts/ensure-python.sh builds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../sourceFiles';

export const REPO_ROOT = repoRoot();
export const REFERENCE_DIR = path.join(REPO_ROOT, 'engines', 'reference');
export const REFERENCE_CONFIG = path.join(REFERENCE_DIR, 'configs', 'tiny.json');

/** The venv's python, or TIMESHARE_PYTHON when set. */
export function referencePython(): string {
  const python = process.env.TIMESHARE_PYTHON ?? path.join(REPO_ROOT, '.cache', 'pyenv', 'bin', 'python');
  if (!existsSync(python)) {
    throw new Error(`reference engine: no Python at ${python}; run scripts/ensure-python.sh (or set TIMESHARE_PYTHON)`);
  }
  return python;
}

export interface ReferenceEngineOptions {
  configPath?: string;
  /** 0 (default): a free port. */
  port?: number;
  /** auto | cpu | cuda | cuda:N */
  device?: string;
  lr?: number;
  /** Trainer passes over each batch per step (default 4). */
  epochs?: number;
  /** Sleep this long per generated token (stands in for a big model's decode time in tests). */
  decodeDelayMs?: number;
  /** Sleep this long before registering a generate request: an abort sent meanwhile finds no such request, as in SGLang. */
  registerDelayMs?: number;
  /** Timeout of weight-update group formation and of each broadcast operation (default 60 s). */
  weightSyncTimeoutS?: number;
  /** Trainer: sleep between broadcast buckets (stands in for a big model's transfer time in tests). */
  broadcastDelayMs?: number;
  /** Trainer: save every step here and resume from it at start (survives a restart). */
  checkpointDir?: string;
  /** Name of an environment variable (set for the child) that holds the API key. */
  apiKeyEnv?: string;
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
}

export interface ReferenceEngineProcess {
  url: string;
  pid: number;
  output(): string;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process has exited. */
  stop(): Promise<void>;
}

export async function startReferenceEngine(options: ReferenceEngineOptions = {}): Promise<ReferenceEngineProcess> {
  const args = ['-m', 'timeshare_ref', '--config', options.configPath ?? REFERENCE_CONFIG, '--port', String(options.port ?? 0), '--device', options.device ?? 'auto'];
  if (options.lr !== undefined) args.push('--lr', String(options.lr));
  if (options.epochs !== undefined) args.push('--epochs', String(options.epochs));
  if (options.decodeDelayMs !== undefined) args.push('--decode-delay-ms', String(options.decodeDelayMs));
  if (options.registerDelayMs !== undefined) args.push('--register-delay-ms', String(options.registerDelayMs));
  if (options.apiKeyEnv !== undefined) args.push('--api-key-env', options.apiKeyEnv);
  if (options.weightSyncTimeoutS !== undefined) args.push('--weight-sync-timeout-s', String(options.weightSyncTimeoutS));
  if (options.broadcastDelayMs !== undefined) args.push('--broadcast-delay-ms', String(options.broadcastDelayMs));
  if (options.checkpointDir !== undefined) args.push('--checkpoint-dir', options.checkpointDir);
  const child = spawn(referencePython(), args, { cwd: REFERENCE_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  let text = '';
  child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (text = (text + chunk.toString()).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const port = await waitForReady(child, () => text, options.startTimeoutMs ?? 60_000);
    return { url: `http://127.0.0.1:${port}`, pid: child.pid ?? -1, output: () => text, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

function waitForReady(child: ChildProcess, output: () => string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = /^READY (\d+)$/m.exec(output());
      if (match !== null) {
        cleanup();
        resolve(Number(match[1]));
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`reference engine exited (code ${code}) before serving; output:\n${output().slice(-3000)}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`reference engine did not serve within ${timeoutMs} ms; output:\n${output().slice(-3000)}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', check);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', check);
    child.once('exit', onExit);
    check();
  });
}
