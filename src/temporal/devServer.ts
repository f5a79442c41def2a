/**
 * Starts and stops a real `temporal server start-dev` process: used by the tests and by
 * `timeshare dev`. The CLI comes from scripts/provision-temporal.sh (pinned version, cached in
 * the repo's ignored .cache/). We manage the process ourselves rather than through the SDK's
 * test helpers, which try to download a server.
 */
import { ChildProcess, execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { spawnOwned } from '../process/owned';
import { freePort } from '../process/ports';
import { repoRoot } from '../sourceFiles';
import { SEARCH_ATTRIBUTE_REGISTRATIONS } from './searchAttributes';

export const REPO_ROOT = repoRoot();

export interface DevServerOptions {
  /** SQLite file for persistent state; omitted = in-memory (lost when the server stops). */
  dbFile?: string;
  ip?: string;
  /** Front-end gRPC port; omitted = a free port. */
  port?: number;
  /** Web UI port; omitted = a free port. Ignored when headless. */
  uiPort?: number;
  headless?: boolean;
  /** Server stdout/stderr go here (the server is chatty); omitted = a temp file per server. */
  logFile?: string;
  startTimeoutMs?: number;
  /** Codec endpoint the UI calls to show encrypted payloads (`timeshare codec-server`). */
  uiCodecEndpoint?: string;
  /** Server dynamic config (`--dynamic-config-value key=value`), over DEV_SERVER_DYNAMIC_CONFIG. */
  dynamicConfig?: Record<string, string | number | boolean>;
  /** Picks each port not given above (the front end, UI, HTTP API, metrics); default freePort. */
  pickPort?: (ip: string) => Promise<number>;
}

export interface DevServer {
  /** host:port of the gRPC front end. */
  address: string;
  uiUrl: string | undefined;
  pid: number;
  logFile: string;
  /** Resolves when the server process has exited, however (stop, a crash, a kill). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

/** Path of the pinned temporal CLI, provisioning it on first use. */
export function temporalCliPath(): string {
  try {
    return execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'provision-temporal.sh')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  } catch (error) {
    throw new Error(`could not provision the temporal CLI (scripts/provision-temporal.sh failed): ${String(error)}`);
  }
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** What one start attempt wrote to the log (the file is appended to across restarts). */
function logSince(file: string, offset: number): string {
  try {
    return readFileSync(file).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

/** The first line of a log that says what went wrong (a panic's stack trace hides it from the tail). */
function firstError(log: string): string {
  const line = log.split('\n').find((text) => /^(panic|Error|fatal)|address already in use/.test(text));
  return line === undefined ? '' : `${line}\n...\n`;
}

/** The port a server could not bind, from its log ("listen tcp 127.0.0.1:43611: bind: address already in use"). */
export function portTakenInLog(log: string): number | undefined {
  const match = /listen tcp [^\s"]*:(\d+): bind: address already in use/.exec(log);
  return match === null ? undefined : Number(match[1]);
}

async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Dynamic config every dev server started here gets unless the caller sets the key otherwise;
 * the same values as the cluster's config (scripts/cluster.sh).
 * - Events that arrive while a workflow task runs are buffered, and past this many (the server's
 *   default is 100) the server fails that task and the worker replays the history: stopping the
 *   shards of 64 or more ranks at once sends more (docs/benchmarks.md, "Scale run").
 * - A history shard reads its transfer and timer tasks at most 20 times a second by default. A
 *   transition is a chain of such tasks in one workflow (one shard), and past the limiter's burst
 *   each waits for the next read: 0.3 s of the 8-rank train→rolling (docs/benchmarks.md, "The
 *   history service's task reads").
 */
export const DEV_SERVER_DYNAMIC_CONFIG: Readonly<Record<string, string | number | boolean>> = {
  'history.maximumBufferedEventsBatch': 1000,
  'history.transferProcessorMaxPollRPS': 1000,
  'history.timerProcessorMaxPollRPS': 1000,
};

/** The server's `--dynamic-config-value` arguments: the defaults above, overridden key by key by the caller's. */
export function dynamicConfigArgs(overrides: Record<string, string | number | boolean> = {}): string[] {
  return Object.entries({ ...DEV_SERVER_DYNAMIC_CONFIG, ...overrides }).flatMap(([key, value]) => ['--dynamic-config-value', `${key}=${JSON.stringify(value)}`]);
}

/** Attempts when another process took a port picked here before the server bound it. */
const PORT_RACE_ATTEMPTS = 3;

class ServerExitedEarly extends Error {
  constructor(
    message: string,
    /** A port this module picked (not one the caller chose) was taken: a new attempt picks anew. */
    readonly pickedPortTaken: boolean,
  ) {
    super(message);
  }
}

/**
 * Starts a dev server and waits until its default namespace answers. A port picked here (free when
 * probed, src/process/ports.ts) can be taken by another process before the server binds it, which
 * ends the server at start: then it is started again on new ports, up to PORT_RACE_ATTEMPTS times.
 * A port the caller chose is never swapped for another: that error is the caller's to see.
 */
export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDevServerOnce(options);
    } catch (error) {
      if (!(error instanceof ServerExitedEarly) || !error.pickedPortTaken || attempt >= PORT_RACE_ATTEMPTS) throw error;
    }
  }
}

async function startDevServerOnce(options: DevServerOptions): Promise<DevServer> {
  const cli = temporalCliPath();
  const ip = options.ip ?? '127.0.0.1';
  const pickedHere = new Set<number>();
  const pick = async (): Promise<number> => {
    const picked = await (options.pickPort ?? freePort)(ip);
    pickedHere.add(picked);
    return picked;
  };
  const port = options.port ?? (await pick());
  const headless = options.headless ?? false;
  const uiPort = headless ? undefined : (options.uiPort ?? (await pick()));
  const logFile = options.logFile ?? path.join(REPO_ROOT, '.timeshare', 'logs', `temporal-${port}.log`);
  mkdirSync(path.dirname(logFile), { recursive: true });

  const args = ['server', 'start-dev', '--ip', ip, '--port', String(port), '--log-level', 'warn'];
  args.push('--http-port', String(await pick()), '--metrics-port', String(await pick()));
  if (headless) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  if (options.uiCodecEndpoint !== undefined && !headless) args.push('--ui-codec-endpoint', options.uiCodecEndpoint);
  if (options.dbFile !== undefined) {
    mkdirSync(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  args.push(...dynamicConfigArgs(options.dynamicConfig));
  for (const [name, type] of SEARCH_ATTRIBUTE_REGISTRATIONS) args.push('--search-attribute', `${name}=${type}`);

  const logOffset = existsSync(logFile) ? statSync(logFile).size : 0;
  const logFd = openSync(logFile, 'a');
  // Owned: the server ends with this process even when this one is SIGKILLed (src/process/owned.ts).
  const child = spawnOwned({ command: cli, args }, { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${cli}`);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const address = `${ip}:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if (!(await waitForExit(child, 10_000))) {
      child.kill('SIGKILL');
      await waitForExit(child, 5_000);
    }
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = logSince(logFile, logOffset);
      const taken = portTakenInLog(log);
      throw new ServerExitedEarly(
        `temporal dev server exited early (code ${child.exitCode}, signal ${child.signalCode}); log ${logFile}:\n${firstError(log)}${tail(logFile)}`,
        taken !== undefined && pickedHere.has(taken),
      );
    }
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1_000 });
      try {
        // A deadline per probe: something else answering on the port must not hang the start.
        await connection.withDeadline(Date.now() + 2_000, async () => {
          await connection.workflowService.getSystemInfo({});
          // The default namespace is registered asynchronously after the front end is up.
          await connection.workflowService.describeNamespace({ namespace: 'default' });
        });
      } finally {
        await connection.close();
      }
      return { address, uiUrl: uiPort === undefined ? undefined : `http://${ip}:${uiPort}`, pid, logFile, exited, stop };
    } catch (error) {
      lastError = error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  await stop();
  throw new Error(`temporal dev server at ${address} not ready in time: ${String(lastError)}; log ${logFile}:\n${tail(logFile)}`);
}
