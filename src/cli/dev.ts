/**
 * `timeshare dev`: the embedded default. Starts a local Temporal dev server (UI built in, state in
 * a SQLite file under the state folder), the orchestrator worker and one gpu-node worker per node
 * as child processes with the config's engines (simulated by default), then starts the run (or
 * attaches to it when it is already running, after a crash) and prints live progress until it
 * completes.
 *
 * `dev` supervises what it owns: the dev server is started again on the same database when it
 * dies, the workers likewise; every child ends with `dev` however it dies (src/process/owned.ts).
 * It reports a run as failed only when the run workflow failed, and its exit code says what
 * happened (src/cli/exitCodes.ts).
 *
 * Killing this command at any point and running it again resumes the same run: the workflows are
 * in the database file, the samples in the store. Processes we started are also recorded by pid
 * in the state folder, so a leftover of an earlier dev is ended before a new server starts.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { WatchClient } from './client';
import type { ParsedRunConfig } from '../config';
import { TIMESHARE_MARKER } from '../launch/entry';
import { backOffDelay } from '../launch/supervised';
import type { SupervisedDevServer } from '../launch/supervisedDevServer';
import type { DrainingVersions } from '../launch/drainingVersions';
import { metricsAddress, startVersionOrchestrator, startWorkerProcesses, workerCommands, type WorkerProcesses, type WorkerProcessesOptions } from '../launch/workerProcesses';
import { buildRunSpec } from '../contract/spec';
import { runWorkflowId } from '../contract/naming';
import { portBindable } from '../process/ports';
import type { CodecServer } from '../temporal/codecServer';
import { DEFAULT_API_KEY_ENV, resolveSecurity, TLS_ENV } from '../temporal/security';
import { CliError } from './errors';
import { EXIT } from './exitCodes';

export interface DevOptions {
  configPath: string;
  parsed: ParsedRunConfig;
  runId: string;
  stateDir: string;
  port: number;
  uiPort: number;
  /** Seconds between progress lines when nothing changes. */
  progressEverySeconds: number;
  /** How long the watcher waits out an unreachable server before giving up (ms). */
  serverWaitMs: number;
  /** Keep the server and its UI after the run ends, until interrupted. */
  keepUi: boolean;
  /** Serve each worker's Prometheus metrics on 127.0.0.1, from this port on (orchestrator first); absent: none. */
  metricsPort?: number;
}

interface PidRecord {
  pid: number;
  /** A string the process's command line must contain for us to treat it as ours. */
  marker: string;
}

const pidFile = (stateDir: string) => path.join(stateDir, 'dev-processes.json');

function commandLineOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return undefined;
  }
}

const isStill = ({ pid, marker }: PidRecord): boolean => commandLineOf(pid)?.includes(marker) === true;

/**
 * Ends processes an earlier `dev` left behind: only those it recorded, and only if still them.
 * Waits until they are gone (a zombie has no command line), so that their ports are free again.
 */
async function endLeftovers(stateDir: string, log: (line: string) => void): Promise<void> {
  const file = pidFile(stateDir);
  if (!existsSync(file)) return;
  const records = Object.values(JSON.parse(readFileSync(file, 'utf8')) as Record<string, PidRecord>);
  const ended = records.filter(isStill);
  for (const { pid, marker } of ended) {
    log(`ending leftover process ${pid} from an earlier 'timeshare dev' (${marker})`);
    process.kill(pid, 'SIGKILL');
  }
  for (const deadline = Date.now() + LEFTOVER_EXIT_WAIT_MS; ended.some(isStill) && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  rmSync(file);
}

/** How long a SIGKILLed leftover may take to be gone (the kernel closes its sockets as it exits). */
const LEFTOVER_EXIT_WAIT_MS = 5_000;

/** The dev server listens here (src/temporal/devServer.ts's default), on the --port given. */
const DEV_SERVER_IP = '127.0.0.1';
/** How long a worker started with the server waits for it to answer (a server start takes seconds; its own timeout is 60 s). */
const WORKER_SERVER_WAIT_SECONDS = 90;

/** The pids of what this dev runs now, by process name, in the state folder. */
class PidRecords {
  private readonly records: Record<string, PidRecord> = {};
  constructor(private readonly stateDir: string) {}
  set(name: string, record: PidRecord): void {
    this.records[name] = record;
    writeFileSync(pidFile(this.stateDir), JSON.stringify(this.records));
  }
  clear(): void {
    rmSync(pidFile(this.stateDir), { force: true });
  }
}

/** Resolves on the first SIGINT / SIGTERM, saying `message()` as it is then; `off` removes the handlers. */
export function interruption(log: (line: string) => void, message: () => string): { interrupted: () => boolean; signalled: Promise<void>; off: () => void } {
  let interrupted = false;
  let resolve: () => void = () => undefined;
  const signalled = new Promise<void>((done) => (resolve = done));
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(`\n${signal}: ${message()}`);
    resolve();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    interrupted: () => interrupted,
    signalled,
    off: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** The `dev` that owns a state folder (`dev.lock`): its pid and its start time, so a reused pid is not taken for it. */
interface FolderOwner {
  pid: number;
  started: string;
  /** Its Temporal server's host:port, for the commands that read a held folder's run from that server instead. */
  address?: string;
}

const lockFile = (stateDir: string) => path.join(stateDir, 'dev.lock');

/**
 * A live process's start time since boot in clock ticks (/proc/<pid>/stat, field 22); undefined
 * once it is gone or a zombie (a SIGKILLed `dev` its parent has not reaped yet).
 */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: field 3 (the state) first.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' || fields[0] === 'X' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

function ownerOf(file: string): FolderOwner | undefined {
  try {
    const owner = JSON.parse(readFileSync(file, 'utf8')) as Partial<FolderOwner>;
    if (typeof owner.pid !== 'number' || typeof owner.started !== 'string') return undefined;
    return { pid: owner.pid, started: owner.started, ...(typeof owner.address === 'string' ? { address: owner.address } : {}) };
  } catch {
    return undefined; // gone meanwhile, or cut short by a crash while written
  }
}

/**
 * Takes the state folder for this `dev`, or refuses while another `dev` holds it: a second one
 * would end the first's server and workers as leftovers while the first restarts them, and two
 * sets of workers would serve one run (an iteration then fails). A lock whose `dev` is gone (it
 * was SIGKILLed) is taken over. Returns what releases it.
 */
export async function takeStateFolder(stateDir: string, address?: string): Promise<() => void> {
  const file = lockFile(stateDir);
  const me: FolderOwner = { pid: process.pid, started: startTimeOf(process.pid) ?? 'unknown', ...(address === undefined ? {} : { address }) };
  let unreadable = 0;
  for (;;) {
    try {
      writeFileSync(file, JSON.stringify(me), { flag: 'wx' });
      return () => {
        const owner = ownerOf(file);
        if (owner?.pid === me.pid && owner.started === me.started) rmSync(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = ownerOf(file);
    // An empty or partial file may be a `dev` that created it a moment ago: read it again before calling it stale.
    if (holder === undefined && unreadable < 10) {
      unreadable += 1;
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    if (holder !== undefined && startTimeOf(holder.pid) === holder.started) {
      throw new CliError(
        `another 'timeshare dev' (pid ${holder.pid}) runs on the state folder ${stateDir}: stop it first (Ctrl-C in its terminal, or kill -INT ${holder.pid}), or give this one another --state-dir`,
      );
    }
    rmSync(file, { force: true });
  }
}

/** The server address of the live `dev` that holds `stateDir`, if one does and recorded it. */
export function devServerAddressOf(stateDir: string): string | undefined {
  const owner = ownerOf(lockFile(stateDir));
  return owner !== undefined && startTimeOf(owner.pid) === owner.started ? owner.address : undefined;
}

export async function runDev(options: DevOptions, log: (line: string) => void = (line) => console.log(line)): Promise<number> {
  const stateDir = path.resolve(options.stateDir);
  mkdirSync(stateDir, { recursive: true });
  const release = await takeStateFolder(stateDir, `${DEV_SERVER_IP}:${options.port}`);
  try {
    return await runDevOwning(stateDir, options, log);
  } finally {
    release();
  }
}

/**
 * The workers' metrics ports, free before any starts: a worker that cannot bind its port exits,
 * and its supervisor would restart it into the same failure.
 */
async function checkMetricsPorts(options: WorkerProcessesOptions, serverPorts: { port: number; uiPort: number }): Promise<void> {
  const metrics = options.metrics;
  if (metrics === undefined) return;
  const commands = workerCommands({ ...options, metrics: undefined });
  const last = metrics.firstPort + commands.length - 1;
  const refuse = (why: string) => new CliError(`--metrics-port ${metrics.firstPort}: ${why}`, EXIT.usage);
  if (last > 65_535) throw refuse(`the ${commands.length} workers' metrics ports would run to ${last}, above 65535; give a lower first port`);
  for (const [flag, port] of [['--port', serverPorts.port], ['--ui-port', serverPorts.uiPort]] as const) {
    if (port >= metrics.firstPort && port <= last) throw refuse(`the workers' metrics ports ${metrics.firstPort}-${last} include the server's ${flag} ${port}; give another first port`);
  }
  for (const [i, { name }] of commands.entries()) {
    if (!(await portBindable(metrics.firstPort + i, metrics.host))) {
      throw refuse(`${metricsAddress(metrics, i)}, the ${name} worker's metrics address, is in use; give another first port (the workers use ${commands.length} in a row)`);
    }
  }
}

/** `dev` once it owns the state folder. */
async function runDevOwning(stateDir: string, options: DevOptions, log: (line: string) => void): Promise<number> {
  const logDir = path.join(stateDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  await endLeftovers(stateDir, log);

  const spec = buildRunSpec(options.parsed, options.runId);
  // The local dev server is plaintext: TLS and API keys are for `start` / `worker` against a
  // cluster. The payload codec works here too, with a codec endpoint for the UI.
  const temporalSection = options.parsed.config.temporal;
  if (temporalSection.tls !== undefined || temporalSection.apiKeyEnv !== undefined) {
    throw new CliError(
      "'timeshare dev' runs a local plaintext Temporal server: remove temporal.tls and temporal.apiKeyEnv from the config (they apply to 'start' and 'worker' against a cluster)",
      2,
    );
  }
  const plainEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const name of [...Object.values(TLS_ENV), DEFAULT_API_KEY_ENV]) delete plainEnv[name];
  const security = resolveSecurity({ codec: temporalSection.codec }, {}, plainEnv);
  const pids = new PidRecords(stateDir);
  const dbFile = path.join(stateDir, 'temporal.db');
  const address = `${DEV_SERVER_IP}:${options.port}`;
  const workerOptions: WorkerProcessesOptions = {
    configPath: options.configPath,
    address,
    stateDir,
    layout: spec.layout,
    taskQueuePrefix: spec.taskQueuePrefix,
    logDir,
    env: plainEnv,
    restartDelayMs: backOffDelay,
    setCurrentVersion: true,
    serverWaitSeconds: WORKER_SERVER_WAIT_SECONDS,
    ...(options.metricsPort === undefined ? {} : { metrics: { host: DEV_SERVER_IP, firstPort: options.metricsPort } }),
    onStart: (name, pid) => pids.set(name, { pid, marker: TIMESHARE_MARKER }),
    onExit: (name, { code, signal, restartInMs }, logFile) =>
      log(`worker ${name} exited (code ${code}, signal ${signal}); restarting in ${restartInMs} ms — see ${logFile}`),
  };
  await checkMetricsPorts(workerOptions, { port: options.port, uiPort: options.uiPort });
  const startWorkers = (): WorkerProcesses => {
    const started = startWorkerProcesses(workerOptions);
    log(`started ${started.processes.length} workers (logs in ${logDir})`);
    const metrics = workerOptions.metrics;
    if (metrics !== undefined) {
      log(`metrics (Prometheus): ${started.processes.map((worker, i) => `${worker.name} http://${metricsAddress(metrics, i)}/metrics`).join(', ')}`);
    }
    return started;
  };
  // A worker takes longer to start than the server (Node, the worker SDK, the workflow bundle), so
  // the workers start with the server and connect once it answers: a restart after a crash waits
  // for the slower of the two, not for both in turn. Only when the port is free: workers must
  // never reach another server that holds it (the server start then fails, and says so). Not for
  // a run this state folder saw finish: that one is answered without workers.
  const finishedMarker = path.join(stateDir, `finished-${spec.runId}`);
  const startEarly = !existsSync(finishedMarker) && (await portBindable(options.port, DEV_SERVER_IP));
  let workers: WorkerProcesses | undefined = startEarly ? startWorkers() : undefined;
  // What the rest needs (the Temporal client, the server launcher, the watcher) loads while the workers start.
  const [{ SupervisedDevServer }, { startCodecServer }, { connectClient, startOrAttachRun, watchClient }, { OutageTracker, outcomeExitCode, outcomeLine, runOutcome, watchRun }] =
    await Promise.all([import('../launch/supervisedDevServer'), import('../temporal/codecServer'), import('./client'), import('./watch')]);
  let codecServer: CodecServer | undefined;
  if (security.codec !== undefined) {
    try {
      codecServer = await startCodecServer({
        codec: security.codec,
        corsOrigins: [`http://127.0.0.1:${options.uiPort}`, `http://localhost:${options.uiPort}`],
        log,
      });
    } catch (error) {
      await workers?.stop();
      pids.clear();
      throw error;
    }
    log(`payload codec: ${security.summary}; codec endpoint for the UI: ${codecServer.url}`);
  }
  log(`starting Temporal dev server (state: ${dbFile})`);
  let server: SupervisedDevServer;
  try {
    server = await SupervisedDevServer.start({
      dbFile,
      port: options.port,
      uiPort: options.uiPort,
      logFile: path.join(logDir, 'temporal.log'),
      ...(codecServer === undefined ? {} : { uiCodecEndpoint: codecServer.url }),
      log,
      onStart: (started) => pids.set('temporal', { pid: started.pid, marker: dbFile }),
    });
  } catch (error) {
    await workers?.stop();
    pids.clear();
    await codecServer?.close();
    throw new CliError(
      `could not start the Temporal dev server on port ${options.port}: ${error instanceof Error ? error.message : String(error)}\n` +
        `  If another server uses the port, pass --port and --ui-port.`,
    );
  }
  const { uiUrl } = server.current;
  if (server.current.address !== address) {
    await Promise.all([workers?.stop(), server.stop(), codecServer?.close()]);
    pids.clear();
    throw new Error(`the dev server listens on ${server.current.address}, not on ${address} where its workers were told to connect`);
  }

  // What an interruption leaves: a run in flight is resumed by the same command; one that has
  // ended (--keep-ui) is not.
  let runEnded = false;
  const interrupt = interruption(log, () =>
    runEnded ? 'stopping the server (the run has ended; its history stays in the state folder).' : 'stopping workers and server. The run is kept; run the same command again to resume it.',
  );
  let client: Client | undefined;
  let watch: WatchClient | undefined;
  let draining: DrainingVersions | undefined;
  let stopDrainWatch: (() => Promise<void>) | undefined;
  try {
    const target = { address, namespace: 'default', security };
    client = await connectClient(target);
    watch = watchClient(target);
    const workflowId = runWorkflowId(spec.runId);
    // A finished run needs no workers: answered from its workflow's close event (a status query
    // would need a worker to replay the history), before any worker starts.
    const outcome = await startOrAttachRun(client, spec);
    if (outcome.kind === 'finished') {
      log(`run '${spec.runId}' already finished (${outcome.status}). Its history stays in the UI; set run.id in the config to start another.`);
      const ended = await runOutcome(watch, spec.runId, new OutageTracker(address, { limitMs: options.serverWaitMs, log }));
      runEnded = true;
      writeFileSync(finishedMarker, `${outcomeLine(spec.runId, ended)}\n`);
      log(outcomeLine(spec.runId, ended));
      if (options.keepUi) {
        await workers?.stop();
        await keepUi(uiUrl, workflowId, interrupt.signalled, log);
      }
      return outcomeExitCode(ended);
    }
    workers ??= startWorkers();
    draining = await drainingVersions(watch.client, workflowId, workerOptions, log);
    stopDrainWatch = draining.watch(DRAIN_CHECK_MS);
    log(outcome.kind === 'started' ? `started run '${spec.runId}' (${spec.layout.strategy})` : `resumed run '${spec.runId}' (already running)`);
    if (uiUrl !== undefined) {
      for (const line of temporalUiLines(uiUrl, spec.runId)) log(line);
    }
    let ended;
    try {
      ended = await watchRun(watch, spec.runId, {
        address,
        everySeconds: options.progressEverySeconds,
        serverWait: { limitMs: options.serverWaitMs, log },
        log,
        interrupted: interrupt.interrupted,
        abandoned: server.gaveUp,
      });
    } catch (error) {
      // The watcher gave up on the server (its own exit code), or the server could not be restarted.
      if (error instanceof CliError) throw error;
      throw new CliError(error instanceof Error ? error.message : String(error), EXIT.supervisionFailed);
    }
    if (ended === undefined) return EXIT.interrupted;
    runEnded = true;
    writeFileSync(finishedMarker, `${outcomeLine(spec.runId, ended)}\n`);
    log(outcomeLine(spec.runId, ended));
    if (options.keepUi) {
      await stopDrainWatch();
      await Promise.all([workers.stop(), draining.stopAll()]);
      await keepUi(uiUrl, workflowId, interrupt.signalled, log);
    }
    return outcomeExitCode(ended);
  } finally {
    interrupt.off();
    await stopDrainWatch?.();
    await draining?.stopAll();
    await client?.connection.close();
    await watch?.close();
    await workers?.stop();
    await server.stop();
    await codecServer?.close();
    pids.clear();
  }
}

/**
 * Where the Temporal UI shows the run: its workflow, and the list of its workflows (the run and its
 * iterations, by the search attribute TimeshareRunId; not other runs).
 */
export function temporalUiLines(uiUrl: string, runId: string): string[] {
  const workflows = `${uiUrl}/namespaces/default/workflows`;
  return [`Temporal UI: ${workflows}/${runWorkflowId(runId)}`, `  (the run and its iterations: ${workflows}?query=${encodeURIComponent(`TimeshareRunId="${runId}"`)})`];
}

/** How often `dev` looks for older workflow code versions the run is still pinned to. */
const DRAIN_CHECK_MS = 5_000;

/**
 * An in-flight iteration (and the run around it) stays on the workflow code version that started
 * it (docs/design.md §5.2): after a change to the workflow code, `dev` also runs the older
 * versions the run is pinned to, from the bundle cache, until they drain. It looks through the
 * watcher's client: during an outage a look fails at once instead of leaving retries pending.
 */
async function drainingVersions(client: Client, workflowId: string, workerOptions: WorkerProcessesOptions, log: (line: string) => void): Promise<DrainingVersions> {
  const [{ DrainingVersions }, { bundleCacheDir, cachedBundleOf, currentBuildId, WORKFLOW_BUNDLE_INPUTS, WORKFLOWS_PATH }, { currentVersion, deploymentNameFor, pinnedBuildIds }] = await Promise.all([
    import('../launch/drainingVersions'),
    import('../workers/bundle'),
    import('../workers/versioning'),
  ]);
  const cacheDir = bundleCacheDir(WORKFLOWS_PATH);
  return new DrainingVersions({
    probe: () => pinnedBuildIds(client.workflowService, 'default', workflowId),
    deploymentCurrent: async () => (await currentVersion(client, 'default', deploymentNameFor(workerOptions.taskQueuePrefix)))?.buildId,
    // Read at every look: a supervised orchestrator restarted after an edit runs the sources as they are then.
    currentBuildId: () => currentBuildId(WORKFLOW_BUNDLE_INPUTS),
    bundleOf: (buildId) => cachedBundleOf(buildId, cacheDir),
    start: (buildId, bundlePath) => startVersionOrchestrator(workerOptions, buildId, bundlePath),
    log,
    missingBundleHint: () =>
      `it waits until a worker of that version runs; check out that code and run 'timeshare worker orchestrator ${workerOptions.configPath} --address ${workerOptions.address} --state-dir ${workerOptions.stateDir}' from it (docs/design.md §5.2, upgrade procedure)`,
  });
}

/** --keep-ui: the server (and its UI) stay until Ctrl-C. */
async function keepUi(uiUrl: string | undefined, workflowId: string, signalled: Promise<void>, log: (line: string) => void): Promise<void> {
  log(`keeping the Temporal server${uiUrl === undefined ? '' : ` and its UI (${uiUrl}/namespaces/default/workflows/${workflowId})`} until Ctrl-C`);
  await signalled;
}
