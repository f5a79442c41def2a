/**
 * A child process we own (see owned.ts), its output appended to a log file, optionally restarted
 * when it exits on its own. Used for worker processes by `dev` (restart with back-off), `chaos`
 * (restart at once: the harness kills them on purpose) and the control-plane bench (no restart).
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Invocation } from '../process/owned';
import { spawnOwned } from '../process/owned';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process will be started again after this delay. */
  restartInMs: number | undefined;
}

export interface SupervisedOptions {
  name: string;
  invocation: Invocation;
  logFile: string;
  env?: NodeJS.ProcessEnv;
  /** Delay before restart number `restarts` (1-based) after an exit we did not ask for; absent: no restart. */
  restartDelayMs?: (restarts: number) => number;
  /** Told of every start (the new pid). */
  onStart?: (pid: number) => void;
  /** Told of every exit we did not ask for. */
  onExit?: (info: ExitInfo) => void;
}

/** Back-off for a process that keeps dying: 1 s, 2 s, 4 s … up to 10 s. */
export const backOffDelay = (restarts: number): number => Math.min(10_000, 500 * 2 ** Math.min(restarts, 5));

export class SupervisedProcess {
  private current: ChildProcess | undefined;
  private exitedPromise: Promise<void> = Promise.resolve();
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  restarts = 0;

  constructor(readonly options: SupervisedOptions) {
    this.launch();
  }

  get name(): string {
    return this.options.name;
  }

  get logFile(): string {
    return this.options.logFile;
  }

  /** Pid of the running child, or undefined between an exit and its restart. */
  get pid(): number | undefined {
    const child = this.current;
    return child !== undefined && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  /** Resolves when the current child has exited. */
  exited(): Promise<void> {
    return this.exitedPromise;
  }

  /** Signals the running child (a fault, or a test); false when none is running. It restarts as after any exit. */
  kill(signal: NodeJS.Signals): boolean {
    return this.pid !== undefined && this.current!.kill(signal);
  }

  /** The log file's text so far ('' before the first line). */
  log(): string {
    try {
      return readFileSync(this.options.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; no restart afterwards. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    if (this.pid === undefined) return;
    this.current!.kill('SIGTERM');
    const timer = setTimeout(() => this.current?.kill('SIGKILL'), graceMs);
    await this.exitedPromise;
    clearTimeout(timer);
  }

  private launch(): void {
    const { logFile, invocation, env } = this.options;
    mkdirSync(path.dirname(logFile), { recursive: true });
    const fd = openSync(logFile, 'a');
    const child = spawnOwned(invocation, { stdio: ['ignore', fd, fd], env: env ?? process.env });
    closeSync(fd);
    this.current = child;
    if (child.pid !== undefined) this.options.onStart?.(child.pid);
    this.exitedPromise = new Promise((resolve) => {
      let ended = false;
      const onEnd = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (ended) return;
        ended = true;
        resolve();
        if (this.stopping) return;
        const delay = this.options.restartDelayMs;
        const restartInMs = delay === undefined ? undefined : delay(this.restarts + 1);
        this.options.onExit?.({ code, signal, restartInMs });
        if (restartInMs === undefined) return;
        this.restarts += 1;
        this.restartTimer = setTimeout(() => {
          if (!this.stopping) this.launch();
        }, restartInMs);
      };
      child.once('exit', onEnd);
      // A spawn that fails (missing binary) emits 'error' and no 'exit': an exit without a code.
      child.once('error', () => onEnd(null, null));
    });
  }
}
