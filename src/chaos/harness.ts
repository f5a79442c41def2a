/**
 * The fault-injection harness (`timeshare chaos`, `npm run soak`): one run on a real Temporal dev
 * server (SQLite file) with its orchestrator and gpu-node workers as child processes, one fault
 * per iteration from a seeded schedule (schedule.ts), and the invariants (invariants.ts) checked
 * after every iteration while the run is paused between iterations (so the store and the engines
 * are quiescent when audited).
 *
 * Process faults are SIGKILLs at a random point of the target phase; the harness restarts the
 * process (the dev server on the same database file and port). Short phases are held open for the
 * kill by a `slow` engine fault on the phase's operation. Engine faults go through the engines'
 * fault folder (src/engines/simulated/injection.ts) and fire in the operation that defines the phase.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { parseRunConfig, type ParsedRunConfig } from '../config';
import { smallRunConfig, withFaultInjection } from '../config/small';
import { injectFault, firedFaults, releaseFault, withdrawPending, type InjectedFaultInput, type InjectedFaultKind } from '../engines/simulated/injection';
import { trainNodes } from '../gpu/layout';
import { iterationWorkflowId, orchestratorQueue, runWorkflowId } from '../contract/naming';
import { buildRunSpec } from '../contract/spec';
import type { IterationStats, Phase, RunSpec, RunStatus } from '../contract/types';
import { describeError } from '../contract/errors';
import { FsTrajectoryStore } from '../store';
import { startWorkerProcesses } from '../launch/workerProcesses';
import { freePort } from '../process/ports';
import { startDevServer, type DevServer } from '../temporal/devServer';
import { PHASES, queryRunStatus } from '../temporal/runStatus';
import { engineStateDir, faultInjectionDir, runtimePaths } from '../workers/runtime';
import type { RunSummary } from '../workflows/run';
import { checkIteration, checkObservedStatus, observeVersions, type ObservedVersions, type RankEngineState, type TrainerEngineState } from './invariants';
import { coverage, deferRolloutFault, FAULT_KINDS, FAULT_PHASES, isEngineFault, planFaults, type FaultKind, type FaultPhase, type PlannedFault } from './schedule';

export interface ChaosOptions {
  /** Faults to inject, one per iteration (the run has this many iterations). */
  faults: number;
  seed: number;
  stateDir: string;
  kinds?: readonly FaultKind[];
  phases?: readonly FaultPhase[];
  /** Whole-run limit; past it the harness stops and reports the run as not completed. */
  deadlineMs?: number;
  log?: (line: string) => void;
  /** A fixed schedule instead of the seeded one (tests pin the faults they need). */
  plan?: PlannedFault[];
  /**
   * How the run syncs weights (default disk). With broadcast, faults aimed at the sync phase strike
   * an engine's receive of the collective (hang, crash, error, slow, or a process kill held there).
   */
  weightSync?: 'disk' | 'broadcast';
}

export interface InjectedRecord {
  index: number;
  kind: FaultKind;
  /** The phase aimed at, and the phase the run was in when the fault struck. */
  phase: FaultPhase;
  observedPhase: string;
  /** The iteration completed afterwards with every invariant holding. */
  survived: boolean;
}

export interface ChaosReport {
  runId: string;
  seed: number;
  iterationsDone: number;
  faultsPlanned: number;
  faultsInjected: number;
  faultsSurvived: number;
  /** Faults whose operation never ran (withdrawn, not counted as injected). */
  faultsNotFired: number;
  /** Iteration attempts that failed (and were retried) because of a fault. */
  iterationAttemptsFailed: number;
  invariantViolations: string[];
  samplesLost: number;
  runCompleted: boolean;
  elapsedMs: number;
  faults: InjectedRecord[];
  /** Kind × phase pairs struck, of the kinds and phases the soak was asked for. */
  coverage: { covered: number; total: number; missing: string[] };
}

/**
 * Why the soak failed (its exit code 1); empty when it passed. A pair of the asked kinds and
 * phases that no fault struck fails it only under `requireCoverage` (on a loaded machine a fault
 * may land in the phase after the one aimed at).
 */
export function soakFailures(report: ChaosReport, options: { requireCoverage: boolean }): string[] {
  const failures: string[] = [];
  if (report.invariantViolations.length > 0) failures.push(`${report.invariantViolations.length} invariant violations`);
  if (report.samplesLost > 0) failures.push(`${report.samplesLost} samples lost`);
  if (!report.runCompleted) failures.push('the run did not complete');
  if (options.requireCoverage && report.coverage.missing.length > 0) {
    failures.push(`coverage ${report.coverage.covered}/${report.coverage.total}: no fault struck ${report.coverage.missing.join(', ')}`);
  }
  return failures;
}

/** The harness's run: the small simulated run with fault injection, short timeouts so recovery is quick. */
export function chaosConfig(runId: string, iterations: number, storeDir: string, weightSync: 'disk' | 'broadcast' = 'disk'): Record<string, unknown> {
  return withFaultInjection(
    smallRunConfig({
      run: { id: runId, iterations },
      temporal: { heartbeatTimeoutSeconds: 2, activityRetry: { initialIntervalSeconds: 0.2, maximumAttempts: 5 } },
      store: { dir: storeDir },
      simulation: withToolStepsOfSeconds(smallRunConfig().simulation as SimulationOverrides),
      // A short deadline per collective: a hung member is torn out of the group quickly.
      ...(weightSync === 'broadcast' ? { engine: { weightSync: { mode: 'broadcast', timeoutSeconds: 20, attempts: 4 } } } : {}),
    }),
  );
}

type SimulationOverrides = Record<string, unknown> & { workload: Record<string, unknown> };

/**
 * Tool steps of seconds (median 3 s, as an agent's test run or search): with the small run's
 * 300 ms steps the kept ranks' long tail beside training completes the whole next batch, and
 * every iteration after the first starts with its batch complete, with no rollout phase to strike.
 */
function withToolStepsOfSeconds(simulation: SimulationOverrides): SimulationOverrides {
  return { ...simulation, workload: { ...simulation.workload, envStepMs: { median: 3000, p90: 12000 } } };
}

/** Engine operation that defines each phase (where an engine fault, or a hold, lands). */
function phaseOperation(phase: FaultPhase, spec: RunSpec, point: number): Omit<InjectedFaultInput, 'id' | 'kind'> {
  const ranks = spec.layout.ranks.map((rank) => rank.id);
  const released = spec.layout.shrinkRanks;
  const pick = <T>(list: readonly T[]): T => list[Math.min(list.length - 1, Math.floor(point * list.length))]!;
  switch (phase) {
    case 'rollout':
      return { target: 'rollout', operation: 'generate', at: pick(ranks) };
    case 'shrink':
      return { target: 'rollout', operation: 'releaseMemory', at: pick(released) };
    case 'train':
      return { target: 'trainer', operation: 'trainStep', at: trainNodes(spec.layout)[0]! };
    case 'sync':
      return { target: 'rollout', operation: spec.weightSync === undefined ? 'updateWeights' : 'receiveWeights', at: pick(ranks) };
    case 'expand':
      return { target: 'rollout', operation: 'resumeMemory', tag: 'kv_cache', at: pick(released) };
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The phases a completed attempt passes, each once and in this order (src/iteration/program.ts). */
const ATTEMPT_PHASES: readonly Phase[] = PHASES.filter((phase) => phase !== 'recovering' && phase !== 'done');

/**
 * The phase iteration `stats` was in at `atMs` (its workflow's clock, the same machine's), from
 * its start and time per phase; undefined outside it (an earlier, failed attempt of the iteration).
 */
export function phaseAt(stats: Pick<IterationStats, 'startedAtMs' | 'endedAtMs' | 'phaseMs'>, atMs: number): Phase | undefined {
  if (atMs < stats.startedAtMs || atMs > stats.endedAtMs) return undefined;
  let end = stats.startedAtMs;
  for (const phase of ATTEMPT_PHASES) {
    end += stats.phaseMs[phase] ?? 0;
    if (atMs < end) return phase;
  }
  return 'expand';
}

/** A kill strikes at a random point this long after its held call starts (rollout: at once). */
const KILL_WINDOW_MS = 900;
/** The held call's longest delay: the harness releases it at the kill, seen however late. */
const HOLD_CEILING_MS = 15_000;

/** Rejects if `promise` takes longer than `ms` (a call to a server that is being restarted can hang). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const started = Date.now();
  const deadline = started + (options.deadlineMs ?? 30 * 60_000);
  const stateDir = path.resolve(options.stateDir);
  if (existsSync(path.join(stateDir, 'temporal.db'))) {
    throw new Error(`${stateDir} already holds a soak's database; pass another --state-dir (or remove that folder)`);
  }
  mkdirSync(path.join(stateDir, 'logs'), { recursive: true });
  const runId = `chaos-${options.seed}`;
  let plan = options.plan ?? planFaults({ seed: options.seed, count: options.faults, kinds: options.kinds, phases: options.phases });

  const configPath = path.join(stateDir, `${runId}.json`);
  const raw = chaosConfig(runId, plan.length, path.join(stateDir, 'store'), options.weightSync);
  writeFileSync(configPath, JSON.stringify(raw, null, 2));
  const parsed: ParsedRunConfig = parseRunConfig(raw, configPath);
  const spec = buildRunSpec(parsed, runId);
  const paths = runtimePaths(parsed.config, stateDir);
  const faultDir = faultInjectionDir(paths, runId);
  const heartbeatMs = spec.heartbeatTimeoutMs;

  const dbFile = path.join(stateDir, 'temporal.db');
  const port = await freePort();
  const startServer = () => startDevServer({ dbFile, port, headless: true, logFile: path.join(stateDir, 'logs', 'temporal.log') });
  let server: DevServer = await startServer();
  const address = server.address;

  // Crashed (an engine crash kills one) or killed by us: restarted as a supervisor would.
  const workers = startWorkerProcesses({
    configPath,
    address,
    stateDir,
    layout: spec.layout,
    taskQueuePrefix: spec.taskQueuePrefix,
    logDir: path.join(stateDir, 'logs'),
    restartDelayMs: () => 500,
  });

  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const handle = client.workflow.getHandle<(input: unknown) => Promise<RunSummary>>(runWorkflowId(runId));

  const violations: string[] = [];
  const records: InjectedRecord[] = [];
  let samplesLost = 0;
  let observed: ObservedVersions = { highest: 0, committed: 0 };
  let iterationsDone = 0;
  let notFired = 0;
  let attemptsFailed = 0;
  let runCompleted = false;
  let lastStatus: RunStatus | undefined;

  /** The run's status, or undefined while it cannot be asked (a process is down). */
  const poll = async (): Promise<RunStatus | undefined> => {
    try {
      const status = await withTimeout(queryRunStatus(client, spec.runId), 15_000);
      for (const v of checkObservedStatus(spec.layout, observed, status)) violations.push(v);
      observed = observeVersions(observed, status);
      lastStatus = status;
      return status;
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) throw error;
      return undefined;
    }
  };
  /** Sends the update until it is accepted; a resume refused because the run is not paused is done already. */
  const update = async (name: 'pause' | 'resume'): Promise<void> => {
    for (;;) {
      try {
        await withTimeout(handle.executeUpdate(name), 30_000);
        return;
      } catch (error) {
        if (name === 'resume' && describeError(error).includes('the run is not paused')) return;
        if (Date.now() > deadline) throw new Error(`could not send '${name}' before the deadline: ${String(error)}`);
        await sleep(200);
      }
    }
  };

  const killServer = async (): Promise<void> => {
    process.kill(server.pid, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(server.pid, 0);
        await sleep(50);
      } catch {
        break;
      }
    }
    server = await startServer();
  };

  // Ctrl-C: end what we started (workers, server) before exiting.
  const onSignal = () => {
    void Promise.all([workers.stop(0), server.stop()]).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // Each fault is armed before its iteration starts (the first before the run, the others while
    // the run is paused after the previous iteration): a phase the iteration passes in its first
    // milliseconds (the shrink of a batch complete at the start) is struck too.
    if (plan.length > 0) arm(plan[0]!);
    await client.workflow.start('runWorkflow', { workflowId: runWorkflowId(runId), taskQueue: orchestratorQueue(spec.taskQueuePrefix), args: [{ spec }] });
    log(`chaos: run '${runId}' on ${address}, ${plan.length} faults (seed ${options.seed}), state ${stateDir}`);

    // One fault per iteration; `k` follows the run (if iterations ever ran without a pause the
    // harness says so and goes on from where the run is).
    let k = 0;
    let gaveUp = false;
    while (k < plan.length) {
      if (Date.now() > deadline) break;
      const fault = plan[k]!;
      const last = k === plan.length - 1;
      if (k > 0) await update('resume');
      // Pause takes effect after the iteration running when it arrives: wait for iteration k to start.
      for (;;) {
        const status = await poll();
        if (status !== undefined && (status.iteration > k || (status.iteration === k && !status.paused && status.phase !== 'starting'))) break;
        if (Date.now() > deadline) throw new Error(`iteration ${k} did not start before the deadline`);
        await sleep(20);
      }
      if (!last) await update('pause');
      const violationsBefore = violations.length;
      const record = await strike(fault);
      // Wait for the iteration to end (paused after it, or the run done).
      let done = k + 1;
      for (;;) {
        if (Date.now() > deadline) throw new Error(`iteration ${k} did not finish before the deadline (last status: ${JSON.stringify(lastStatus?.phase)})`);
        const description = await withTimeout(handle.describe(), 15_000).catch(() => undefined);
        if (description?.status.name === 'COMPLETED') {
          done = plan.length;
          break;
        }
        const status = await poll();
        if (status !== undefined && status.paused && status.iteration > k) {
          done = status.iteration;
          break;
        }
        if (status?.lostRanks !== undefined) {
          // Every process the harness kills comes back within a second: a lost rank is a false alarm.
          violations.push(`iteration ${k}: ranks ${status.lostRanks.join(',')} marked lost after ${fault.kind} in ${fault.phase}: ${status.lastError ?? ''}`);
          gaveUp = true;
          break;
        }
        if (status !== undefined && status.paused && status.iteration === k && status.lastError !== undefined) {
          violations.push(`iteration ${k} failed for good after ${fault.kind} in ${fault.phase}: ${status.lastError}`);
          await update('resume');
          if (!last) await update('pause');
        }
        await sleep(50);
      }
      if (gaveUp) {
        log(`  iteration ${k}: ${fault.kind} in ${fault.phase}: VIOLATION ${violations.at(-1)}; soak stopped`);
        break;
      }
      if (done > k + 1) log(`  harness: iterations ${k}..${done - 1} ran without a pause between them (checked together)`);
      iterationsDone = done;
      const fired = firedFaults(faultDir);
      const struck = record !== undefined && (!isEngineFault(fault.kind) || fired.has(faultId(fault)));
      // A generate call is made in rollout and in the long tail beside training: an engine fault on
      // it is counted in the phase the iteration was in when it fired, from the iteration's phase times.
      const firedAtMs = fired.get(faultId(fault))?.firedAtMs;
      if (struck && isEngineFault(fault.kind) && phaseOperation(fault.phase, spec, fault.point).operation === 'generate' && firedAtMs !== undefined) {
        const stats = (lastStatus?.lastIteration?.iteration === k ? lastStatus : await poll())?.lastIteration;
        record.observedPhase = (stats?.iteration === k ? phaseAt(stats, firedAtMs) : undefined) ?? 'unknown';
      }
      if (record !== undefined && !struck) {
        notFired += 1;
        log(`  fault ${k} ${fault.kind}@${fault.phase}: its operation never ran; withdrawn`);
      }
      withdrawPending(faultDir);
      // The state is checked as it is now (after iteration done - 1); the histories of every
      // iteration since the fault, the faulted one included, are scanned.
      const verdict = await checkAfterIteration(done - 1);
      for (let iteration = k; iteration < done - 1; iteration++) {
        const { outOfMemory, failedAttempts } = await scanHistories(iteration);
        attemptsFailed += failedAttempts;
        verdict.violations.push(...outOfMemory.map((oom) => `simulated out-of-memory: ${oom}`));
      }
      // The loss figure is the run's current count of missing samples, not a per-iteration delta.
      samplesLost = Math.max(samplesLost, verdict.samplesLost);
      violations.push(...verdict.violations);
      if (struck) {
        record.survived = violations.length === violationsBefore;
        records.push(record);
      }
      log(
        `  iteration ${k}: ${fault.kind} in ${fault.phase} (${struck ? `struck in ${record.observedPhase}` : 'not injected'}), ` +
          `${verdict.violations.length === 0 ? 'invariants hold' : `VIOLATIONS: ${verdict.violations.join('; ')}`}`,
      );
      k = done;
      if (k < plan.length) {
        await deferRolloutFaultWithoutRollout(k);
        arm(plan[k]!);
      }
    }
    const summary = gaveUp ? undefined : await Promise.race([handle.result(), sleep(Math.max(0, deadline - Date.now())).then(() => undefined)]);
    runCompleted = summary !== undefined && summary.iterations === plan.length && summary.version === plan.length;
    if (!runCompleted) violations.push(`the run did not complete: ${JSON.stringify(summary)}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await workers.stop(15_000);
    await connection.close().catch(() => undefined);
    await server.stop();
  }

  return {
    runId,
    seed: options.seed,
    iterationsDone,
    faultsPlanned: plan.length,
    faultsInjected: records.length,
    faultsSurvived: records.filter((record) => record.survived).length,
    faultsNotFired: notFired,
    iterationAttemptsFailed: attemptsFailed,
    invariantViolations: violations,
    samplesLost,
    runCompleted,
    elapsedMs: Date.now() - started,
    faults: records,
    coverage: coverage(
      records.map((record) => ({ kind: record.kind, phase: record.observedPhase })),
      options.kinds ?? FAULT_KINDS,
      options.phases ?? FAULT_PHASES,
    ),
  };

  function faultId(fault: PlannedFault): string {
    return `fault-${fault.index}`;
  }

  /**
   * Iteration `k` has no rollout phase when the run holds a batch's worth of completed samples
   * before it starts (paused after the one before): a fault aimed at rollout then changes places
   * with the next one aimed elsewhere.
   */
  async function deferRolloutFaultWithoutRollout(k: number): Promise<void> {
    const status = await poll();
    if (status === undefined || status.samples.completedWaiting < status.batchSize) return;
    const deferred = deferRolloutFault(plan, k);
    if (deferred === undefined) return;
    const next = deferred.plan[k]!;
    log(`  harness: iteration ${k} starts with its batch complete (no rollout phase): ${plan[k]!.kind}@rollout moved to iteration ${deferred.movedTo}, ${next.kind}@${next.phase} takes its place`);
    plan = deferred.plan;
  }

  /** The call a process kill waits for: held open until the kill (released then), at most this long. */
  function holdId(fault: PlannedFault): string {
    return `hold-${fault.index}`;
  }

  /**
   * Queues the fault for iteration `fault.index` before that iteration starts: an engine fault as
   * itself; a process kill as a slow call holding the phase's operation open (it fires when the
   * phase reaches it, seen from the fault folder without asking Temporal) for strike() to kill in.
   */
  function arm(fault: PlannedFault): void {
    const target = phaseOperation(fault.phase, spec, fault.point);
    if (isEngineFault(fault.kind)) {
      const kind = fault.kind.slice('engine-'.length) as InjectedFaultKind;
      // A hang outlasts the heartbeat timeout (Temporal must notice); slow stays within it.
      const durationMs = kind === 'hang' ? heartbeatMs + 1_500 : kind === 'slow' ? Math.round(heartbeatMs * 0.75) : 0;
      injectFault(faultDir, { id: faultId(fault), kind, durationMs, ...target });
      return;
    }
    injectFault(faultDir, { id: holdId(fault), kind: 'slow', durationMs: HOLD_CEILING_MS, ...target });
  }

  /** Strikes the armed fault of the iteration now running; returns what struck, or undefined if it could not. */
  async function strike(fault: PlannedFault): Promise<InjectedRecord | undefined> {
    // The operation defines the phase: it is in flight (held, for a kill) when the fault strikes.
    const record: InjectedRecord = { index: fault.index, kind: fault.kind, phase: fault.phase, observedPhase: fault.phase, survived: false };
    if (isEngineFault(fault.kind)) return record;
    const firedAt = await holdFired(fault);
    if (firedAt === undefined) return undefined;
    try {
      // Rollout can end within a second once the batch fills (the other ranks keep completing
      // samples): a kill aimed at rollout strikes as the held call starts, the others at a random
      // point of the kill window (at once if the harness saw the call late).
      const offsetMs = fault.phase === 'rollout' ? 0 : Math.round(fault.point * KILL_WINDOW_MS);
      await sleep(Math.max(0, firedAt + offsetMs - Date.now()));
      // The phase the run reports at the kill (the held call may outlive the phase that made it).
      record.observedPhase = (await poll())?.phase ?? 'unknown';
      switch (fault.kind) {
        case 'orchestrator-kill':
          if (!workers.get('orchestrator').kill('SIGKILL')) {
            log(`  fault ${fault.index}: the orchestrator worker was not running (restarting); not injected`);
            return undefined;
          }
          break;
        case 'gpu-node-kill':
          if (!workers.get('gpu-node-0').kill('SIGKILL')) {
            log(`  fault ${fault.index}: the gpu-node worker was not running (restarting); not injected`);
            return undefined;
          }
          break;
        case 'server-kill':
          await killServer();
          break;
        default:
          throw new Error(`not a process fault: ${fault.kind}`);
      }
      return record;
    } finally {
      // A held call outside the killed process goes on now.
      releaseFault(faultDir, holdId(fault));
    }
  }

  /** When the kill's held call started; undefined if iteration `fault.index` ended without it. */
  async function holdFired(fault: PlannedFault): Promise<number | undefined> {
    const until = Date.now() + 120_000;
    let nextStatusAt = Date.now();
    for (;;) {
      const fired = firedFaults(faultDir).get(holdId(fault));
      if (fired !== undefined) return fired.firedAtMs;
      if (Date.now() > until) {
        log(`  fault ${fault.index}: phase ${fault.phase} not reached in 120 s; not injected`);
        return undefined;
      }
      // The iteration can end without the held call (a rank that took no generate call in it):
      // asked of the run every half second, not through the fault folder, which cannot tell.
      if (Date.now() >= nextStatusAt) {
        const status = await poll();
        if (status !== undefined && (status.iteration > fault.index || status.phase === 'done')) {
          log(`  fault ${fault.index}: iteration ${fault.index} ended without the call that defines phase ${fault.phase}; not injected`);
          return undefined;
        }
        nextStatusAt = Date.now() + 500;
      }
      await sleep(10);
    }
  }

  async function checkAfterIteration(iteration: number) {
    let status: RunStatus | undefined;
    for (let i = 0; i < 200 && status === undefined; i++) {
      status = await poll();
      if (status === undefined) await sleep(100);
    }
    if (status === undefined) return { violations: [`status of the run not available after iteration ${iteration}`], samplesLost: 0 };
    const audit = await new FsTrajectoryStore(paths.storeRoot, runId).audit();
    const engineDir = engineStateDir(paths, runId);
    const ranks: RankEngineState[] = spec.layout.ranks.map((rank) => ({
      rank: rank.id,
      ...(JSON.parse(readFileSync(path.join(engineDir, `rank-${rank.id}.json`), 'utf8')) as { weightVersion: number; resident: string[] }),
    }));
    const trainers: TrainerEngineState[] = trainNodes(spec.layout).map((node) => ({
      node,
      ...(JSON.parse(readFileSync(path.join(engineDir, `trainer-node-${node}.json`), 'utf8')) as { weightVersion: number; onloaded: boolean }),
    }));
    const { outOfMemory, failedAttempts } = await scanHistories(iteration);
    attemptsFailed += failedAttempts;
    return checkIteration({ iteration, status, audit, ranks, trainers, trainerShared: spec.layout.shrinkRanks.length > 0, outOfMemory });
  }

  /** Simulated OOMs (activity failures or workflow failures) and failed attempts of iteration `iteration`. */
  async function scanHistories(iteration: number): Promise<{ outOfMemory: string[]; failedAttempts: number }> {
    const workflowId = iterationWorkflowId(runId, iteration);
    const outOfMemory: string[] = [];
    let failedAttempts = 0;
    const runIds: string[] = [];
    for await (const execution of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runIds.push(execution.runId);
    for (const id of runIds) {
      const history = await client.workflow.getHandle(workflowId, id).fetchHistory();
      for (const event of history.events ?? []) {
        const failure = event.activityTaskFailedEventAttributes?.failure ?? event.workflowExecutionFailedEventAttributes?.failure;
        if (event.workflowExecutionFailedEventAttributes) failedAttempts += 1;
        const text = JSON.stringify(failure ?? '');
        if (text.includes('SimulatedOutOfMemoryError') || /out of memory/i.test(text)) outOfMemory.push(`${workflowId} (${id}): ${failure?.message}`);
      }
    }
    return { outOfMemory, failedAttempts };
  }
}

/** The report as the lines the soak prints (and docs/reliability.md quotes). */
export function formatReport(report: ChaosReport): string {
  const byKind = new Map<string, number>();
  const byPhase = new Map<string, number>();
  for (const fault of report.faults) {
    byKind.set(fault.kind, (byKind.get(fault.kind) ?? 0) + 1);
    byPhase.set(fault.observedPhase, (byPhase.get(fault.observedPhase) ?? 0) + 1);
  }
  const list = (map: Map<string, number>, order: readonly string[]) =>
    [...map.entries()].sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0])).map(([key, n]) => `${key} ${n}`).join(', ');
  return [
    `soak result (run ${report.runId}, seed ${report.seed}, ${(report.elapsedMs / 1000).toFixed(0)} s):`,
    `  iterations done:       ${report.iterationsDone}`,
    `  faults injected:       ${report.faultsInjected} (${report.faultsNotFired} planned faults never fired)`,
    `  faults survived:       ${report.faultsSurvived}`,
    `  invariant violations:  ${report.invariantViolations.length}`,
    `  samples lost:          ${report.samplesLost}`,
    `  run completed:         ${report.runCompleted ? 'yes' : 'NO'}`,
    `  iteration attempts failed and retried: ${report.iterationAttemptsFailed}`,
    `  by kind:  ${list(byKind, FAULT_KINDS)}`,
    `  by phase (when struck): ${list(byPhase, FAULT_PHASES)}`,
    `  coverage: ${report.coverage.covered}/${report.coverage.total} (kind × phase)` +
      (report.coverage.missing.length === 0 ? '' : report.coverage.missing.length <= 10 ? `; missing ${report.coverage.missing.join(', ')}` : `; ${report.coverage.missing.length} pairs not covered`),
    ...report.invariantViolations.map((v) => `  VIOLATION: ${v}`),
  ].join('\n');
}
