/**
 * A Temporal dev server kept running: when it exits without being asked to (a crash, a kill), it
 * is started again on the same database file and ports, so the workflows in it carry on. Used by
 * `timeshare dev`, which owns its server.
 */
import { startDevServer, type DevServer, type DevServerOptions } from '../temporal/devServer';

/** Attempts to bring a dead server back before giving up (the port may be held briefly). */
const RESTART_ATTEMPTS = 5;
const restartDelayMs = (attempt: number): number => Math.min(8_000, 1_000 * 2 ** (attempt - 1));

export interface SupervisedDevServerOptions extends DevServerOptions {
  /** Ports are fixed so that clients and workers find the restarted server where they left it. */
  port: number;
  log: (line: string) => void;
  /** Told of every (re)start, with the server's pid. */
  onStart?: (server: DevServer) => void;
}

export class SupervisedDevServer {
  private stopping = false;
  private rejectGaveUp: (error: Error) => void = () => undefined;
  /** Rejects when the server died and could not be started again; never resolves. */
  readonly gaveUp: Promise<never>;
  restarts = 0;

  private constructor(
    private server: DevServer,
    private readonly options: SupervisedDevServerOptions,
  ) {
    this.gaveUp = new Promise<never>((_, reject) => {
      this.rejectGaveUp = reject;
    });
    // Nobody may be awaiting it yet: a rejection is read by whoever races it.
    this.gaveUp.catch(() => undefined);
    this.watch();
  }

  static async start(options: SupervisedDevServerOptions): Promise<SupervisedDevServer> {
    const server = await startDevServer(options);
    options.onStart?.(server);
    return new SupervisedDevServer(server, options);
  }

  get current(): DevServer {
    return this.server;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.server.stop();
  }

  private watch(): void {
    const watched = this.server;
    void watched.exited.then(async ({ code, signal }) => {
      if (this.stopping || watched !== this.server) return;
      const { log, dbFile } = this.options;
      log(`Temporal dev server (pid ${watched.pid}) exited (code ${code}, signal ${signal}); starting it again on the same database${dbFile === undefined ? '' : ` (${dbFile})`}, log ${watched.logFile}`);
      let lastError: unknown;
      for (let attempt = 1; attempt <= RESTART_ATTEMPTS && !this.stopping; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, restartDelayMs(attempt)));
        if (this.stopping) return;
        try {
          this.server = await startDevServer(this.options);
          this.restarts += 1;
          this.options.onStart?.(this.server);
          log(`Temporal dev server running again (pid ${this.server.pid})`);
          this.watch();
          return;
        } catch (error) {
          lastError = error;
          log(`  restart attempt ${attempt}/${RESTART_ATTEMPTS} failed: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
        }
      }
      if (!this.stopping) {
        this.rejectGaveUp(new Error(`the Temporal dev server died and could not be started again (${RESTART_ATTEMPTS} attempts): ${lastError instanceof Error ? lastError.message : String(lastError)}`));
      }
    });
  }
}
