/**
 * Environment servers the gpu-node worker runs itself (engine.environment.servers[].command):
 * started with the worker, restarted whenever they exit, stopped with it (and killed if the
 * worker process exits first, so none outlives it). Episodes wait for their server to serve
 * (`ready`) before opening a session, so a restart costs the episodes on it a replay (or their
 * counted end), never a failed activity.
 */
import { startServerProcess, type ServerProcess } from './launch';

export interface SupervisedServerSpec {
  url: string;
  command: readonly string[];
  cwd?: string;
}

export interface SupervisorOptions {
  /** How long one start may take before it counts as failed (default 120 s). */
  startTimeoutMs?: number;
  /** Pause before a restart (default 1 s). */
  restartDelayMs?: number;
  log?: (line: string) => void;
}

export class SupervisedServer {
  private current: ServerProcess | undefined;
  private starting: Promise<void> | undefined;
  private stopping = false;
  /** Starts after the first (restarts after exits or failed starts). */
  restarts = 0;

  constructor(
    readonly spec: SupervisedServerSpec,
    private readonly options: SupervisorOptions = {},
  ) {
    process.once('exit', () => {
      if (this.current !== undefined) process.kill(this.current.pid, 'SIGKILL');
    });
  }

  /** Resolves once the server serves (starting it when it is not running). */
  ready(): Promise<void> {
    if (this.stopping) return Promise.reject(new Error(`environment server ${this.spec.url}: stopped`));
    // Exited but its exit not handled yet: restart now rather than hand out a dead server.
    if (this.current !== undefined && !this.current.running()) this.onExit(this.current);
    this.starting ??= this.launch();
    return this.starting;
  }

  /** The running process's pid (tests), or undefined. */
  get pid(): number | undefined {
    return this.current?.pid;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.current?.stop();
    this.current = undefined;
  }

  private async launch(): Promise<void> {
    for (;;) {
      try {
        const server = await startServerProcess(this.spec.command, {
          name: `environment server ${this.spec.url} (${this.spec.command.join(' ')})`,
          url: this.spec.url,
          startTimeoutMs: this.options.startTimeoutMs ?? 120_000,
          ...(this.spec.cwd === undefined ? {} : { cwd: this.spec.cwd }),
        });
        this.current = server;
        void server.exited.then(() => this.onExit(server));
        return;
      } catch (error) {
        if (this.stopping) throw error;
        this.restarts++;
        this.options.log?.(`environment server ${this.spec.url} failed to start, retrying: ${error instanceof Error ? error.message : String(error)}`);
        await new Promise((resolve) => setTimeout(resolve, this.options.restartDelayMs ?? 1000));
      }
    }
  }

  private onExit(server: ServerProcess): void {
    if (this.current !== server) return;
    this.current = undefined;
    if (this.stopping) return;
    this.restarts++;
    this.options.log?.(`environment server ${this.spec.url} exited; restarting it`);
    this.starting = new Promise((resolve) => setTimeout(resolve, this.options.restartDelayMs ?? 1000)).then(() => this.launch());
    this.starting.catch(() => undefined);
  }
}
