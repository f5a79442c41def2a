/**
 * `timeshare dev`: the embedded default. Starts a local Temporal dev server (UI built in, state in
 * a SQLite file under the state folder), the orchestrator worker and one gpu-node worker per node
 * as child processes with the config's engines (simulated by default), then starts the run (or
 * attaches to it when it is already running, after a crash) and prints live progress until it
 * completes.
 *
 * Killing this command at any point and running it again resumes the same run: the workflows are
 * in the database file, the samples in the store. Processes we started are recorded by pid in the
 * state folder, so a SIGKILLed dev's leftover server can be ended before a new one starts.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { ParsedRunConfig } from '../config';
import { buildRunSpec } from '../pipeline/spec';
import { nodeTaskQueues } from '../workers/gpuNode';
import { runWorkflowId } from '../pipeline/naming';
import { startCodecServer, type CodecServer } from '../temporal/codecServer';
import { startDevServer, type DevServer } from '../temporal/devServer';
import { DEFAULT_API_KEY_ENV, resolveSecurity, TLS_ENV } from '../temporal/security';
import { CliError, connectClient, queryStatus, runResult, startOrAttachRun } from './client';
import { progressLine, statusBlock } from './progress';
import { moduleFile, nodeArgsFor } from '../sourceFiles';

/** Worker processes run this CLI's entry: compiled when this runs compiled, else through tsx. */
const MAIN = moduleFile(__dirname, 'main');
const MAIN_ARGS = nodeArgsFor(MAIN);

export interface DevOptions {
  configPath: string;
  parsed: ParsedRunConfig;
  runId: string;
  stateDir: string;
  port: number;
  uiPort: number;
  /** Seconds between progress lines when nothing changes. */
  progressEverySeconds: number;
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

/** Ends processes a SIGKILLed earlier `dev` left behind: only those it recorded, and only if still them. */
function endLeftovers(stateDir: string, log: (line: string) => void): void {
  const file = pidFile(stateDir);
  if (!existsSync(file)) return;
  const records = JSON.parse(readFileSync(file, 'utf8')) as PidRecord[];
  for (const { pid, marker } of records) {
    const commandLine = commandLineOf(pid);
    if (commandLine !== undefined && commandLine.includes(marker)) {
      log(`ending leftover process ${pid} from an earlier 'timeshare dev' (${marker})`);
      process.kill(pid, 'SIGKILL');
    }
  }
  rmSync(file);
}

function recordPids(stateDir: string, records: PidRecord[]): void {
  writeFileSync(pidFile(stateDir), JSON.stringify(records));
}

interface Supervised {
  name: string;
  args: string[];
  child: ChildProcess | undefined;
  restarts: number;
}

export async function runDev(options: DevOptions, log: (line: string) => void = (line) => console.log(line)): Promise<number> {
  const stateDir = path.resolve(options.stateDir);
  mkdirSync(path.join(stateDir, 'logs'), { recursive: true });
  endLeftovers(stateDir, log);

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
  let codecServer: CodecServer | undefined;
  if (security.codec !== undefined) {
    codecServer = await startCodecServer({
      codec: security.codec,
      corsOrigins: [`http://127.0.0.1:${options.uiPort}`, `http://localhost:${options.uiPort}`],
      log,
    });
    log(`payload codec: ${security.summary}; codec endpoint for the UI: ${codecServer.url}`);
  }
  const dbFile = path.join(stateDir, 'temporal.db');
  log(`starting Temporal dev server (state: ${dbFile})`);
  let server: DevServer;
  try {
    server = await startDevServer({
      dbFile,
      port: options.port,
      uiPort: options.uiPort,
      logFile: path.join(stateDir, 'logs', 'temporal.log'),
      ...(codecServer === undefined ? {} : { uiCodecEndpoint: codecServer.url }),
    });
  } catch (error) {
    await codecServer?.close();
    throw new CliError(
      `could not start the Temporal dev server on port ${options.port}: ${error instanceof Error ? error.message : String(error)}\n` +
        `  If another server uses the port, pass --port and --ui-port.`,
    );
  }
  const records: PidRecord[] = [{ pid: server.pid, marker: dbFile }];
  recordPids(stateDir, records);

  const common = [path.resolve(options.configPath), '--address', server.address, '--state-dir', stateDir, '--exit-with-parent'];
  const workers: Supervised[] = [{ name: 'orchestrator', args: ['worker', 'orchestrator', ...common], child: undefined, restarts: 0 }];
  for (let node = 0; node < spec.layout.nodes; node++) {
    if (nodeTaskQueues(spec.layout, spec.taskQueuePrefix, node).length === 0) continue;
    workers.push({ name: `gpu-node-${node}`, args: ['worker', 'gpu-node', ...common, '--node', String(node)], child: undefined, restarts: 0 });
  }

  let shuttingDown = false;
  const launch = (worker: Supervised): void => {
    const logPath = path.join(stateDir, 'logs', `${worker.name}.log`);
    const fd = openSync(logPath, 'a');
    const child = spawn(process.execPath, [...MAIN_ARGS, ...worker.args], { stdio: ['ignore', fd, fd], env: plainEnv });
    closeSync(fd);
    worker.child = child;
    if (child.pid !== undefined) {
      records.push({ pid: child.pid, marker: MAIN });
      recordPids(stateDir, records);
    }
    child.on('exit', (code, signal) => {
      if (shuttingDown) return;
      worker.restarts += 1;
      const delayMs = Math.min(10_000, 500 * 2 ** Math.min(worker.restarts, 5));
      log(`worker ${worker.name} exited (code ${code}, signal ${signal}); restarting in ${delayMs} ms — see ${logPath}`);
      setTimeout(() => {
        if (!shuttingDown) launch(worker);
      }, delayMs);
    });
  };
  for (const worker of workers) launch(worker);
  log(`started ${workers.length} workers (logs in ${path.join(stateDir, 'logs')})`);

  const shutdown = async (): Promise<void> => {
    shuttingDown = true;
    for (const worker of workers) worker.child?.kill('SIGTERM');
    await Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve) => {
            const child = worker.child;
            if (child === undefined || child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => {
              child.kill('SIGKILL');
              resolve();
            }, 10_000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    await server.stop();
    await codecServer?.close();
    rmSync(pidFile(stateDir), { force: true });
  };

  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(`\n${signal}: stopping workers and server. The run is kept; run the same command again to resume it.`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let client: Client | undefined;
  try {
    client = await connectClient({ address: server.address, namespace: 'default', security });
    const outcome = await startOrAttachRun(client, spec);
    const workflowId = runWorkflowId(spec.runId);
    if (outcome.kind === 'finished') {
      log(`run '${spec.runId}' already finished (${outcome.status}). Its history stays in the UI; set run.id in the config to start another.`);
      log(statusBlock(await queryStatus(client, spec.runId)));
      return 0;
    }
    log(outcome.kind === 'started' ? `started run '${spec.runId}' (${spec.layout.strategy})` : `resumed run '${spec.runId}' (already running)`);
    if (server.uiUrl !== undefined) {
      log(`Temporal UI: ${server.uiUrl}/namespaces/default/workflows/${workflowId}`);
      log(`  (all runs: ${server.uiUrl}/namespaces/default/workflows?query=TimeshareRunId%3D%22${spec.runId}%22)`);
    }
    const summary = await watchRun(client, spec.runId, options.progressEverySeconds, log, () => interrupted);
    if (summary === undefined) return 130;
    log(`run '${spec.runId}' finished: ${summary}`);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client?.connection.close();
    await shutdown();
  }
}

/** Prints a progress line on every change (and every `everySeconds`) until the run ends or we are interrupted. */
export async function watchRun(
  client: Client,
  runId: string,
  everySeconds: number,
  log: (line: string) => void,
  interrupted: () => boolean,
): Promise<string | undefined> {
  let done = false;
  let summary = '';
  const result = runResult(client, runId).then(
    (value) => {
      done = true;
      summary = `${value.iterations} iterations, weights v${value.version}, ${value.samples.trained} samples trained, dropped ${JSON.stringify(value.samples.dropped)}`;
    },
    (error: unknown) => {
      done = true;
      summary = `FAILED: ${error instanceof Error ? error.message : String(error)}`;
    },
  );
  let lastKey = '';
  let lastPrint = 0;
  let firstTrained: { at: number; trained: number } | undefined;
  while (!done && !interrupted()) {
    try {
      const status = await queryStatus(client, runId);
      const now = Date.now();
      firstTrained ??= { at: now, trained: status.samples.trained };
      const elapsed = (now - firstTrained.at) / 1000;
      const rate = elapsed > 1 && status.samples.trained > firstTrained.trained ? (status.samples.trained - firstTrained.trained) / elapsed : undefined;
      const key = `${status.iteration}/${status.phase}/${status.paused}`;
      if (key !== lastKey || now - lastPrint >= everySeconds * 1000) {
        log(progressLine(status, rate));
        if (status.lastError !== undefined && key !== lastKey) log(`  last error: ${status.lastError}`);
        lastKey = key;
        lastPrint = now;
      }
    } catch (error) {
      // A query can fail while the orchestrator worker restarts; say so and keep watching.
      log(`  (status unavailable: ${error instanceof Error ? error.message.split('\n')[0] : String(error)})`);
    }
    await Promise.race([result, new Promise((resolve) => setTimeout(resolve, 500))]);
  }
  if (interrupted()) return undefined;
  await result;
  return summary;
}
