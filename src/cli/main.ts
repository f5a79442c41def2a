/**
 * The `timeshare` command. Every subcommand has --help; errors are one clear message and a
 * non-zero exit (2 for an invalid config or arguments, 1 otherwise).
 *
 * This module loads only what the help text needs (commander and a few constants): each command
 * imports its modules when it runs, so `--help` or `check-config` never load the Temporal SDK,
 * and only the worker commands load its native core (docs/benchmarks.md, CLI start-up).
 */
import path from 'node:path';
import { Command } from 'commander';
import { defaultConfigPath } from '../config/paths';
import { FAULT_KINDS, FAULT_PHASES, type FaultKind, type FaultPhase } from '../chaos/schedule';
import type { SecurityFlags } from '../temporal/security';
import { decimal, hostPort, parseDecimalList } from './args';
import { addBenchCommand } from './benchCommand';
import type { ConnectionFlags } from './context';
import { DEFAULT_STATE_DIR, STATUS_SERVER_WAIT_SECONDS, WATCH_SERVER_WAIT_SECONDS } from './defaults';
import { CliError } from './errors';
import { EXIT } from './exitCodes';
import { formatIdRanges, statusBlock } from './progress';
import { addTimelineCommand } from './timeline';
import type { OrchestratorFlags, WorkerFlags } from './workerCommands';

/** Decimal digits only, >= min (src/cli/args.ts): `1e1` or `0x10` are refused, not read as 10 or 16. */
const integer = (name: string, min: number): ((value: string) => number) => decimal(name, min);

/** Where a connection setting comes from when its flag is not given: commands that take a config read it there first. */
export type SettingSources = 'config' | 'no-config';

/** Payload codec flags (also used by `codec-server`). */
function withCodecFlags(command: Command, sources: SettingSources): Command {
  return command
    .option('--codec-key-id <id>', sources === 'config' ? 'payload codec key id (default: config temporal.codec.keyId)' : 'payload codec key id (with --codec-key-file or --codec-key-env)')
    .option('--codec-key-file <file>', 'file holding the 256-bit payload codec key (64 hex characters or base64)')
    .option('--codec-key-env <VAR>', 'environment variable holding the payload codec key');
}

/** The connection flags; their help names the config among the defaults only where the command takes one. */
function withConnectionFlags(command: Command, sources: SettingSources): Command {
  const from = (...rest: string[]): string => `default: ${[...(sources === 'config' ? ['config'] : []), ...rest].join(', ')}`;
  return withCodecFlags(
    command
      .option('--address <host:port>', `Temporal front-end address (${from('$TEMPORAL_ADDRESS', 'localhost:7233')})`)
      .option('--namespace <name>', `Temporal namespace (${from('$TEMPORAL_NAMESPACE', 'default')})`)
      .option('--tls', 'connect with TLS (system root CAs unless --tls-ca)')
      .option('--tls-ca <file>', `CA certificate of the server (PEM; ${from('$TEMPORAL_TLS_CA_PATH')})`)
      .option('--tls-cert <file>', `client certificate for mTLS (PEM; ${from('$TEMPORAL_TLS_CERT_PATH')})`)
      .option('--tls-key <file>', `client private key for mTLS (PEM; ${from('$TEMPORAL_TLS_KEY_PATH')})`)
      .option('--tls-server-name <name>', `name the server certificate must carry (${from('$TEMPORAL_TLS_SERVER_NAME')})`)
      .option('--api-key-env <VAR>', `environment variable holding the Temporal API key (${sources === 'config' ? 'default: config, then $TEMPORAL_API_KEY if set' : 'default: $TEMPORAL_API_KEY if set'})`),
    sources,
  );
}

export function buildProgram(): Command {
  const program = new Command('timeshare')
    .description('Time-multiplex one GPU pool between RL rollout and training; every iteration a durable Temporal workflow.')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('dev')
    .description('Run the embedded default: local Temporal dev server + UI, workers (simulated GPUs, or the real engines the config names); start (or resume) the run and show progress')
    .argument('[config]', 'run configuration (YAML or JSON)', defaultConfigPath())
    .option('--state-dir <dir>', 'where the dev server database, engine state and logs live', DEFAULT_STATE_DIR)
    .option('--port <port>', 'Temporal gRPC port', decimal('--port', 1, 65_535), 7233)
    .option('--ui-port <port>', 'Temporal UI port', decimal('--ui-port', 1, 65_535), 8233)
    .option('--progress-every <seconds>', 'print progress at least this often', integer('--progress-every', 1), 5)
    .option('--server-wait <seconds>', 'give up (exit 4) when the Temporal server stays unreachable this long', integer('--server-wait', 0), WATCH_SERVER_WAIT_SECONDS)
    .option('--keep-ui', 'keep the server and the Temporal UI after the run ends, until Ctrl-C')
    .option('--metrics-port <port>', "serve each worker's Prometheus metrics on 127.0.0.1 from this port on (the orchestrator's, then each gpu-node's; README \"Metrics\")", decimal('--metrics-port', 1, 65_535))
    .action(async (configPath: string, flags: { stateDir: string; port: number; uiPort: number; progressEvery: number; serverWait: number; keepUi?: boolean; metricsPort?: number }) => {
      const { loadConfig } = await import('./context');
      const { runDev } = await import('./dev');
      const { parsed, runId } = loadConfig(configPath);
      process.exitCode = await runDev({
        configPath,
        parsed,
        runId,
        stateDir: flags.stateDir,
        port: flags.port,
        uiPort: flags.uiPort,
        progressEverySeconds: flags.progressEvery,
        serverWaitMs: flags.serverWait * 1000,
        keepUi: flags.keepUi === true,
        ...(flags.metricsPort === undefined ? {} : { metricsPort: flags.metricsPort }),
      });
    });

  withConnectionFlags(
    program
      .command('start')
      .description('Start a run on a Temporal server (workers must be running: `timeshare worker ...`); attaches if it is already running')
      .argument('<config>', 'run configuration (YAML or JSON)')
      .option('--watch', 'print progress until the run ends (exit 0: finished, 3: the run failed, 4: server unreachable past --server-wait)')
      .option('--server-wait <seconds>', 'with --watch: give up when the server stays unreachable this long', integer('--server-wait', 0), WATCH_SERVER_WAIT_SECONDS),
    'config',
  ).action(async (configPath: string, flags: ConnectionFlags & { watch?: boolean; serverWait: number }) => {
    const { loadConfig, target } = await import('./context');
    const { connectClient, startOrAttachRun, watchClient } = await import('./client');
    const { buildRunSpec } = await import('../contract/spec');
    const { outcomeExitCode, outcomeLine, watchRun } = await import('./watch');
    const { parsed, runId } = loadConfig(configPath);
    const temporal = target(flags, parsed);
    const client = await connectClient(temporal);
    try {
      const outcome = await startOrAttachRun(client, buildRunSpec(parsed, runId));
      if (outcome.kind === 'finished') throw new CliError(`run '${runId}' already finished (${outcome.status}); set run.id in the config to start another`);
      console.log(`${outcome.kind === 'started' ? 'started' : 'already running:'} run '${runId}'`);
      if (flags.watch) {
        const log = (line: string) => console.log(line);
        const serverWait = { limitMs: flags.serverWait * 1000, log };
        const watch = watchClient(temporal);
        try {
          const ended = await watchRun(watch, runId, { address: temporal.address, everySeconds: 5, serverWait, log, interrupted: () => false });
          if (ended !== undefined) {
            console.log(outcomeLine(runId, ended));
            process.exitCode = outcomeExitCode(ended);
          }
        } finally {
          await watch.close();
        }
      }
    } finally {
      await client.connection.close();
    }
  });

  withConnectionFlags(
    program
      .command('status')
      .description(
        "Show a run's iteration, phase, GPU roles, weight version and sample counts; for a run that has ended, also how it ended " +
          '(from its history alone when no worker runs any more). Exit 0: running or finished, 3: the run failed, 4: server unreachable past --server-wait',
      )
      .argument('<run-id>')
      .option('--json', 'print the raw status as JSON (an ended run: with its outcome; one whose workers are gone: { runId, outcome })')
      .option('--server-wait <seconds>', 'wait this long for an unreachable server (exit 4 after)', integer('--server-wait', 0), STATUS_SERVER_WAIT_SECONDS),
    'no-config',
  ).action(async (runId: string, flags: ConnectionFlags & { json?: boolean; serverWait: number }) => {
    const { target } = await import('./context');
    const { outcomeExitCode, outcomeLine, statusThroughOutage } = await import('./watch');
    const { status, outcome } = await statusThroughOutage(target(flags), runId, { limitMs: flags.serverWait * 1000, log: (line) => console.error(line) });
    if (flags.json) {
      console.log(JSON.stringify(status === undefined ? { runId, outcome } : { ...status, ...(outcome === undefined ? {} : { outcome }) }, null, 2));
    } else {
      if (status !== undefined) console.log(statusBlock(status));
      if (outcome !== undefined) console.log(outcomeLine(runId, outcome));
    }
    if (outcome !== undefined) process.exitCode = outcomeExitCode(outcome);
  });

  const updateCommand = (name: string, update: 'pause' | 'resume' | 'stop', description: string) =>
    withConnectionFlags(program.command(name).description(description).argument('<run-id>'), 'no-config').action(async (runId: string, flags: ConnectionFlags) => {
      await sendRunUpdate(runId, flags, { name: update });
    });
  updateCommand('pause', 'pause', 'Pause the run after the current iteration');
  updateCommand('resume', 'resume', 'Resume a paused run (also retries an iteration that failed)');
  updateCommand('stop', 'stop', 'Stop the run after the current iteration');

  withConnectionFlags(
    program
      .command('set-batch-size')
      .description('Change the batch size from the next iteration on')
      .argument('<run-id>')
      .argument('<batch-size>', 'samples per training batch', integer('batch size', 1)),
    'no-config',
  ).action(async (runId: string, batchSize: number, flags: ConnectionFlags) => {
    await sendRunUpdate(runId, flags, { name: 'setBatchSize', batchSize });
  });

  withConnectionFlags(
    program
      .command('set-shrink-set')
      .description("Ranks released for training from the next iteration on ('default' returns to the layout's rule)")
      .argument('<run-id>')
      // Parsed by commander (not in the action) so that a bad rank is reported with usage, exit 2.
      .argument('<ranks>', "comma-separated rank ids or ranges (0-3), or 'default'", (text: string) => (text === 'default' ? null : parseDecimalList('rank ids', text, 0))),
    'no-config',
  ).action(async (runId: string, ranks: number[] | null, flags: ConnectionFlags) => {
    await sendRunUpdate(runId, flags, { name: 'setShrinkSet', ranks });
  });

  withConnectionFlags(
    program
      .command('return-ranks')
      .description('Return lost ranks to the pool once their node is back (they reload and sync weights at the next iteration)')
      .argument('<run-id>')
      .argument('<ranks>', 'comma-separated rank ids or ranges (0-3; see `timeshare status`)', (text: string) => parseDecimalList('rank ids', text, 0)),
    'no-config',
  ).action(async (runId: string, ranks: number[], flags: ConnectionFlags) => {
    await sendRunUpdate(runId, flags, { name: 'returnRanks', ranks });
  });

  const worker = program.command('worker').description('Run a worker process against an existing Temporal server');
  const workerFlags = (command: Command) =>
    withConnectionFlags(command, 'config')
      .option('--state-dir <dir>', 'local state (simulated engine state)', DEFAULT_STATE_DIR)
      .option('--exit-with-parent', 'exit when the parent process ends (used by `timeshare dev`)')
      .option('--server-wait <seconds>', 'wait this long for a server that does not answer yet (`timeshare dev` starts its workers while its server starts)', integer('--server-wait', 0), 0)
      .option('--metrics-address <host:port>', "serve Prometheus metrics there (GET /metrics): the Temporal SDK's and timeshare's (README \"Metrics\")", hostPort('--metrics-address'));

  workerFlags(
    worker
      .command('orchestrator')
      .description('Workflows and store bookkeeping (no GPU); runs as a version of the Worker Deployment named after the task-queue prefix')
      .argument('<config>', 'run config (YAML or JSON) the run was started with')
      .option('--build-id <id>', 'Worker Deployment build id (default: content hash of the workflow bundle)')
      .option('--workflow-bundle <file>', 'run a prebuilt workflow bundle (e.g. an older version kept in .cache/bundles) instead of the bundle of src/workflows')
      .option('--set-current', "make this version the deployment's current one (default: only when it has none)")
      .option('--never-current', 'never make this version current (a worker kept for workflows pinned to an older version)'),
  ).action(async (configPath: string, flags: OrchestratorFlags) => {
    const { runOrchestratorWorker } = await import('./workerCommands');
    await runOrchestratorWorker(configPath, flags);
  });

  workerFlags(
    worker
      .command('gpu-node')
      .description("One GPU node: its ranks' rollout engines and its part of the trainer")
      .argument('<config>', 'run config (YAML or JSON) the run was started with')
      .requiredOption('--node <index>', 'node index in the pool', integer('--node', 0)),
  ).action(async (configPath: string, flags: WorkerFlags & { node: number }) => {
    const { runGpuNodeWorker } = await import('./workerCommands');
    await runGpuNodeWorker(configPath, flags);
  });

  addTimelineCommand(program, (command) => withConnectionFlags(command, 'no-config'));
  withCodecFlags(
    program
      .command('codec-server')
      .description('Serve the payload codec over HTTP (POST /encode, /decode) so the Temporal UI can show encrypted payloads')
      .argument('[config]', 'run configuration whose temporal.codec to use (or give --codec-key-*)')
      .option('--host <host>', 'interface to listen on (anyone who reaches it can decrypt)', '127.0.0.1')
      .option('--port <port>', 'port to listen on', decimal('--port', 1, 65_535), 8081)
      .option('--cors-origin <origin...>', "origins allowed to call it from a browser (the Temporal UI's)", ['http://localhost:8233', 'http://127.0.0.1:8233']),
    'config',
  ).action(async (configPath: string | undefined, flags: SecurityFlags & { host: string; port: number; corsOrigin: string[] }) => {
    const { loadConfig } = await import('./context');
    const { resolveSecurity } = await import('../temporal/security');
    const { startCodecServer } = await import('../temporal/codecServer');
    const parsed = configPath === undefined ? undefined : loadConfig(configPath).parsed;
    const { codec } = resolveSecurity(parsed?.config.temporal, flags);
    if (codec === undefined) throw new CliError('no payload codec configured: set temporal.codec in the config or pass --codec-key-id with --codec-key-file or --codec-key-env', 2);
    const server = await startCodecServer({ codec, host: flags.host, port: flags.port, corsOrigins: flags.corsOrigin, log: (line) => console.error(line) });
    console.log(`codec endpoint for key id '${codec.keyId}': ${server.url} (CORS: ${flags.corsOrigin.join(', ')})`);
    console.log(`  Temporal UI: set the codec endpoint to ${server.url}; temporal CLI: --codec-endpoint ${server.url}`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await server.close();
  });

  program
    .command('chaos')
    .description(
      'Fault-injection soak: a run on its own dev server and workers, one fault per iteration (process kills, server kill + restart, ' +
        'engine crash / hang / error / slow, engine restart) in every phase, invariants checked after every iteration; exit 1 on any violation or lost sample ' +
        '(with --require-coverage, also when a kind × phase pair asked for was not struck)',
    )
    .option('--faults <n>', 'faults to inject (one per iteration); 38 covers every kind × phase pair once', integer('--faults', 1), 38)
    .option('--seed <n>', 'seed of the fault schedule', integer('--seed', 0), 1)
    .option('--kinds <list>', `comma-separated fault kinds (default all: ${FAULT_KINDS.join(',')})`)
    .option('--phases <list>', `comma-separated phases (default all: ${FAULT_PHASES.join(',')})`)
    .option('--state-dir <dir>', 'fresh folder for the dev server database, store, engine state and logs (default .timeshare/chaos/<seed>-<time>)')
    .option('--deadline-minutes <n>', 'give up after this long', integer('--deadline-minutes', 1), 30)
    .option('--weight-sync <mode>', 'disk | broadcast: how the run syncs weights (broadcast: sync faults strike the collective)', 'disk')
    .option('--require-coverage', 'fail (exit 1) unless every kind × phase pair of --kinds × --phases was struck by a fault')
    .action(async (flags: { faults: number; seed: number; kinds?: string; phases?: string; stateDir?: string; deadlineMinutes: number; weightSync: string; requireCoverage?: boolean }) => {
      if (flags.weightSync !== 'disk' && flags.weightSync !== 'broadcast') throw new CliError(`--weight-sync: expected disk or broadcast, got ${JSON.stringify(flags.weightSync)}`, 2);
      const { formatReport, runChaos, soakFailures } = await import('../chaos/harness');
      const report = await runChaos({
        weightSync: flags.weightSync,
        faults: flags.faults,
        seed: flags.seed,
        kinds: listOption('--kinds', flags.kinds, FAULT_KINDS) as FaultKind[] | undefined,
        phases: listOption('--phases', flags.phases, FAULT_PHASES) as FaultPhase[] | undefined,
        stateDir: flags.stateDir ?? path.join(DEFAULT_STATE_DIR, 'chaos', `${flags.seed}-${Date.now()}`),
        deadlineMs: flags.deadlineMinutes * 60_000,
      });
      console.log(formatReport(report));
      const failures = soakFailures(report, { requireCoverage: flags.requireCoverage === true });
      if (failures.length > 0) console.error(`soak failed: ${failures.join('; ')}`);
      process.exitCode = failures.length === 0 ? EXIT.ok : EXIT.error;
    });

  program
    .command('check-config')
    .description('Validate a run configuration and print the GPU layout it describes')
    .argument('<config>', 'run configuration (YAML or JSON) to check')
    .action(async (configPath: string) => {
      // The config module alone: checking a config loads nothing of Temporal.
      const { loadRunConfigFile, resolveRunId } = await import('../config');
      const parsed = loadRunConfigFile(configPath);
      const runId = resolveRunId(parsed.config, configPath);
      const { layout } = parsed;
      console.log(`${configPath}: valid. run '${runId}', ${layout.strategy}, ${layout.nodes}×${layout.gpusPerNode} GPUs`);
      console.log(`  rollout ranks: ${layout.ranks.map((rank) => `${rank.id}:[${formatIdRanges(rank.gpus)}]@node${rank.node}`).join(' ')}`);
      console.log(`  train GPUs:    ${formatIdRanges(layout.trainGpus)}`);
      console.log(`  released at shrink: ranks ${formatIdRanges(layout.shrinkRanks) || '(none)'}`);
    });

  addBenchCommand(program);

  return program;
}

/** A comma-separated list option, each item one of `allowed`; undefined when not given. */
function listOption(name: string, text: string | undefined, allowed: readonly string[]): string[] | undefined {
  if (text === undefined) return undefined;
  const items = text.split(',').map((item) => item.trim());
  const unknown = items.filter((item) => !allowed.includes(item));
  if (unknown.length > 0) throw new CliError(`${name}: unknown ${unknown.join(", ")} (allowed: ${allowed.join(", ")})`, 2);
  return items;
}

/** Sends one of the run's updates, says what it does, then prints the run's status while it runs. */
async function sendRunUpdate(runId: string, flags: ConnectionFlags, update: Parameters<typeof import('./client').sendUpdate>[2]): Promise<void> {
  const { target } = await import('./context');
  const { connectClient, sendUpdate, statusWhileRunning } = await import('./client');
  const client = await connectClient(target(flags));
  try {
    const said = await sendUpdate(client, runId, update);
    console.log(said);
    // The update's own answer is the run workflow's state alone (no running iteration's phase,
    // pool or counts): the status `timeshare status` shows follows it, while the run runs.
    const status = await statusWhileRunning(client, runId);
    if (status !== undefined) console.log(statusBlock(status));
  } finally {
    await client.connection.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    const commanderError = error as { code?: string; exitCode?: number };
    if (typeof commanderError.code === 'string' && commanderError.code.startsWith('commander.')) {
      // --help and --version exit 0; usage errors (already printed by commander) exit 2.
      return ['commander.helpDisplayed', 'commander.help', 'commander.version'].includes(commanderError.code) ? 0 : 2;
    }
    if (error instanceof CliError) {
      console.error(`timeshare: ${error.message}`);
      return error.exitCode;
    }
    // Loaded here, not up front: a config or security error means the command loaded them already.
    const { ConfigError } = await import('../config/load');
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 2;
    }
    const { SecurityConfigError } = await import('../temporal/security');
    if (error instanceof SecurityConfigError) {
      console.error(`timeshare: ${error.message}`);
      return 2;
    }
    // One plain line; the stack only when asked for (TIMESHARE_DEBUG=1).
    const debug = process.env.TIMESHARE_DEBUG === '1';
    console.error(`timeshare: ${error instanceof Error ? (debug ? (error.stack ?? error.message) : error.message) : String(error)}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
