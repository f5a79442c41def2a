/**
 * The worker processes of one run, as deployed: one orchestrator and one gpu-node worker per node
 * that hosts a rank or the trainer, each a `timeshare worker …` child process (supervised.ts).
 * Started by `dev`, `chaos` and the control-plane bench.
 */
import path from 'node:path';
import type { PoolLayout } from '../gpu/layout';
import { nodeTaskQueues } from '../workers/taskQueues';
import { timeshareInvocation } from './entry';
import { SupervisedProcess, type ExitInfo } from './supervised';

export interface WorkerProcessesOptions {
  configPath: string;
  address: string;
  stateDir: string;
  layout: PoolLayout;
  taskQueuePrefix: string;
  /** One `<name>.log` per worker here. */
  logDir: string;
  env?: NodeJS.ProcessEnv;
  /** Restart policy after an exit we did not ask for (see SupervisedOptions); absent: no restart. */
  restartDelayMs?: (restarts: number) => number;
  onStart?: (name: string, pid: number) => void;
  onExit?: (name: string, info: ExitInfo, logFile: string) => void;
  /** The orchestrator makes its Worker Deployment version current even if another one is (`--set-current`). */
  setCurrentVersion?: boolean;
  /** Workers wait this long for a server that does not answer yet (`--server-wait`): started while the server starts. */
  serverWaitSeconds?: number;
  /** Each worker serves Prometheus metrics on host:port, the ports consecutive from `firstPort` in workerCommands' order. */
  metrics?: { host: string; firstPort: number };
}

/** What a worker prints once it polls its task queues (src/cli/main.ts). */
const READY_LINE = 'worker for run';

export class WorkerProcesses {
  constructor(readonly processes: readonly SupervisedProcess[]) {}

  get(name: string): SupervisedProcess {
    const found = this.processes.find((worker) => worker.name === name);
    if (found === undefined) throw new Error(`no worker process named '${name}' (have ${this.processes.map((worker) => worker.name).join(', ')})`);
    return found;
  }

  pids(): number[] {
    return this.processes.map((worker) => worker.pid).filter((pid): pid is number => pid !== undefined);
  }

  /** Waits until every worker has said it serves its queues; throws with the log of one that exited or took too long. */
  async waitUntilReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const worker of this.processes) {
      for (;;) {
        if (worker.log().includes(READY_LINE)) break;
        if (worker.pid === undefined) throw new Error(`${worker.name} worker exited before it was ready; log ${worker.logFile}:\n${tail(worker.log())}`);
        if (Date.now() > deadline) throw new Error(`${worker.name} worker not ready in ${timeoutMs} ms; log ${worker.logFile}:\n${tail(worker.log())}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  async stop(graceMs = 10_000): Promise<void> {
    await Promise.all(this.processes.map((worker) => worker.stop(graceMs)));
  }
}

function tail(text: string, lines = 20): string {
  return text.split('\n').slice(-lines).join('\n');
}

type CommandOptions = Pick<WorkerProcessesOptions, 'configPath' | 'address' | 'stateDir' | 'serverWaitSeconds'>;

/** What every `timeshare worker …` of a run is given: the config, the server, the state folder. */
function commonArgs(options: CommandOptions): string[] {
  const common = [path.resolve(options.configPath), '--address', options.address, '--state-dir', options.stateDir, '--exit-with-parent'];
  if (options.serverWaitSeconds !== undefined) common.push('--server-wait', String(options.serverWaitSeconds));
  return common;
}

/** The `timeshare worker …` argument lists for a run: the orchestrator, then each node with something to serve. */
export function workerCommands(
  options: CommandOptions & Pick<WorkerProcessesOptions, 'layout' | 'taskQueuePrefix' | 'setCurrentVersion' | 'metrics'>,
): { name: string; args: string[] }[] {
  const common = commonArgs(options);
  const orchestratorArgs = ['worker', 'orchestrator', ...common, ...(options.setCurrentVersion === true ? ['--set-current'] : [])];
  const commands = [{ name: 'orchestrator', args: orchestratorArgs }];
  for (let node = 0; node < options.layout.nodes; node++) {
    if (nodeTaskQueues(options.layout, options.taskQueuePrefix, node).length === 0) continue;
    commands.push({ name: `gpu-node-${node}`, args: ['worker', 'gpu-node', ...common, '--node', String(node)] });
  }
  const metrics = options.metrics;
  if (metrics === undefined) return commands;
  return commands.map(({ name, args }, i) => ({ name, args: [...args, '--metrics-address', metricsAddress(metrics, i)] }));
}

/** The metrics address of the i-th worker of workerCommands. */
export function metricsAddress(metrics: { host: string; firstPort: number }, i: number): string {
  const port = metrics.firstPort + i;
  if (port > 65_535) throw new Error(`metrics port ${port} of worker ${i + 1} is above 65535: give a lower first port`);
  return `${metrics.host}:${port}`;
}

/**
 * The `timeshare worker orchestrator …` arguments of a worker of an older workflow code version:
 * its cached bundle (which keeps its build id), never made current.
 */
export function versionOrchestratorCommand(options: CommandOptions, buildId: string, bundlePath: string): { name: string; args: string[] } {
  return { name: `orchestrator-${buildId}`, args: ['worker', 'orchestrator', ...commonArgs(options), '--workflow-bundle', path.resolve(bundlePath), '--never-current'] };
}

function supervise(options: WorkerProcessesOptions, { name, args }: { name: string; args: string[] }): SupervisedProcess {
  const logFile = path.join(options.logDir, `${name}.log`);
  return new SupervisedProcess({
    name,
    invocation: timeshareInvocation(args),
    logFile,
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.restartDelayMs === undefined ? {} : { restartDelayMs: options.restartDelayMs }),
    onStart: (pid) => options.onStart?.(name, pid),
    onExit: (info) => options.onExit?.(name, info, logFile),
  });
}

export function startWorkerProcesses(options: WorkerProcessesOptions): WorkerProcesses {
  return new WorkerProcesses(workerCommands(options).map((command) => supervise(options, command)));
}

/** Starts an orchestrator worker of an older version (versionOrchestratorCommand), supervised like the others. */
export function startVersionOrchestrator(options: WorkerProcessesOptions, buildId: string, bundlePath: string): SupervisedProcess {
  return supervise(options, versionOrchestratorCommand(options, buildId, bundlePath));
}
