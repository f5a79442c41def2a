/**
 * A Temporal dev server kept running: when it exits without being asked to (a crash, a kill), it
 * is started again on the same database file and ports, so the workflows in it carry on. Used by
 * `timeshare dev`, which owns its server.
 */
import { startDevServer, type DevServer, type DevServerOptions } from '../temporal/devServer';

/**
 * Attempts to bring a dead server back before giving up (the port may be held briefly); also how
 * many deaths in a row, each soon after its start, make a crash loop that is given up.
 */
const RESTART_ATTEMPTS = 5;

/** When restarts are tried, and how long a server must live before its death starts the count again. */
export interface RestartPolicy {
  delayMs: (attempt: number) => number;
  stableMs: number;
}

const DEFAULT_RESTART_POLICY: RestartPolicy = { delayMs: (attempt) => Math.min(8_000, 1_000 * 2 ** (attempt - 1)), stableMs: 60_000 };

export interface SupervisedDevServerOptions extends DevServerOptions {
  /** Ports are fixed so that clients and workers find the restarted server where they left it. */
  port: number;
  log: (line: string) => void;
  /** Told of every (re)start, with the server's pid. */
  onStart?: (server: DevServer) => void;
  /** Default: backing off from 1 s to 8 s; a server that lived 60 s is stable. */
  restartPolicy?: RestartPolicy;
}

export class SupervisedDevServer {
  private stopping = false;
  private rejectGaveUp: (error: Error) => void = () => undefined;
  /** Rejects when the server died and could not be started again; never resolves. */
  readonly gaveUp: Promise<never>;
  restarts = 0;
  /** Deaths in a row, each within `stableMs` of its server's start. */
  private quickDeaths = 0;
  private startedAt = Date.now();

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
      const policy = this.options.restartPolicy ?? DEFAULT_RESTART_POLICY;
      this.quickDeaths = Date.now() - this.startedAt < policy.stableMs ? this.quickDeaths + 1 : 1;
      // A server that dies again and again soon after it starts (its database or port taken by
      // another process) is not brought back forever: restarting cannot help it.
      if (this.quickDeaths > RESTART_ATTEMPTS) {
        this.rejectGaveUp(
          new Error(
            `the Temporal dev server died ${this.quickDeaths} times in a row, each within ${policy.stableMs / 1000} s of its start (last: code ${code}, signal ${signal}); see its log ${watched.logFile}`,
          ),
        );
        return;
      }
      log(`Temporal dev server (pid ${watched.pid}) exited (code ${code}, signal ${signal}); starting it again on the same database${dbFile === undefined ? '' : ` (${dbFile})`}, log ${watched.logFile}`);
      let lastError: unknown;
      for (let attempt = 1; attempt <= RESTART_ATTEMPTS && !this.stopping; attempt++) {
        // Backed off by the deaths in a row too, so a crash loop slows down before it is given up.
        await new Promise((resolve) => setTimeout(resolve, policy.delayMs(this.quickDeaths + attempt - 1)));
        if (this.stopping) return;
        try {
          this.server = await startDevServer(this.options);
          this.startedAt = Date.now();
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
