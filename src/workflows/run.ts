/**
 * The run workflow: loops iteration workflows (one child per iteration, with an id derived from
 * the run id and iteration number, so a resumed run never repeats one) and continues-as-new
 * every few iterations to keep its own history short. Holds the operator-facing state: status
 * query, pause / resume / stop, batch size and shrink set for the next iteration.
 */
import {
  ApplicationFailure,
  ChildWorkflowFailure,
  allHandlersFinished,
  condition,
  executeChild,
  log,
  makeContinueAsNewFunc,
  ParentClosePolicy,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { addLostRanks, emptyLedger, planShrink, planWithLostRanks, removeLostRanks, samplesByState, type SampleLedger } from '../gpu';
import type { RankId } from '../gpu/layout';
import { mergeLagHistograms, runStalenessFigures, type LagHistogram } from '../gpu/staleness';
import { checkIntRange } from '../validation/patterns';
import { RUN_HISTORY_BYTES_BUDGET } from '../contract/historyBudget';
import { iterationWorkflowId } from '../contract/naming';
import type { IterationStats, Phase, RankKvCapacity, RunSpec, RunStatus, WeightGroupState } from '../contract/types';
import { describeError } from '../contract/errors';
import { ITERATION_KEY, PHASE_KEY, RUN_ID_KEY, STRATEGY_KEY } from '../temporal/searchAttributes';
import { assertDecoded, isUndecodable } from '../temporal/payloadConverter';
import { iterationWorkflow } from './iteration';
import { recordIteration, recordLostRanks } from './runMetrics';
import { pauseUpdate, resumeUpdate, returnRanksUpdate, setBatchSizeUpdate, setShrinkSetUpdate, statusQuery, stopUpdate, updateSchemas } from './signals';

/** What carries over continue-as-new. */
export interface RunState {
  iteration: number;
  version: number;
  ledger: SampleLedger;
  batchSize: number;
  shrinkOverride: RankId[] | null;
  paused: boolean;
  stopRequested: boolean;
  lastIteration: IterationStats | null;
  lastError: string | null;
  /** Ranks whose node is lost (absent in states carried over before lost-node handling). */
  lostRanks?: RankId[];
  /** Returned ranks that reload at the start of the next iteration. */
  rejoinRanks?: RankId[];
  /** Paused because the pool without the lost ranks is below the strategy minimum. */
  pausedForLostRanks?: boolean;
  /** Broadcast sync: the weight-update group the last iteration left formed. */
  weightGroup?: WeightGroupState;
  /** Trained generated tokens of the run by version lag (absent before the first batch with per-token versions). */
  tokenLags?: LagHistogram;
  /** What the ranks' engines reported of their KV capacity (absent before any report). */
  engineKvCapacity?: RankKvCapacity[];
}

export interface RunInput {
  spec: RunSpec;
  state?: RunState;
}

export interface RunSummary {
  runId: string;
  iterations: number;
  version: number;
  stopped: boolean;
  samples: RunStatus['samples'];
}

/** The run's mutable state in one object: what carries over continue-as-new, and what does not. */
interface RunContext {
  spec: RunSpec;
  state: RunState;
  pauseRequested: boolean;
  /** The running iteration's workflow id (its progress query holds its phase, pool and counts). */
  runningIteration: string | undefined;
  phase: Phase;
  iterationsThisExecution: number;
  /** The ledger in state is the one the last iteration completed with, in this execution: the store holds nothing it lacks. */
  ledgerMatchesStore: boolean;
}

/**
 * Continue-as-new onto the deployment's current version: executions are pinned to the version
 * that started them, and the next one starts on the current version (upgrade on continue-as-new).
 */
function continueAsNewOnCurrentVersion(input: RunInput): Promise<never> {
  return makeContinueAsNewFunc<typeof runWorkflow>({ initialVersioningBehavior: 'AUTO_UPGRADE' })(input);
}

export async function runWorkflow(input: RunInput): Promise<RunSummary> {
  assertDecoded('run workflow input', input);
  const { spec } = input;
  const state: RunState = input.state ?? {
    iteration: 0,
    version: 0,
    ledger: emptyLedger(),
    batchSize: spec.batchSize,
    shrinkOverride: null,
    paused: false,
    stopRequested: false,
    lastIteration: null,
    lastError: null,
  };
  const run: RunContext = {
    spec,
    state,
    pauseRequested: false,
    runningIteration: undefined,
    phase: state.iteration >= spec.iterations ? 'done' : 'starting',
    iterationsThisExecution: 0,
    ledgerMatchesStore: false,
  };
  registerHandlers(run);
  describeRun(run);
  upsertSearchAttributes([
    { key: RUN_ID_KEY, value: spec.runId },
    { key: STRATEGY_KEY, value: spec.layout.strategy },
    { key: ITERATION_KEY, value: state.iteration },
  ]);

  while (state.iteration < spec.iterations && !state.stopRequested) {
    const next = await beforeIteration(run);
    if (next === 'stop') break;
    if (next === 'go') await runIterationChild(run);
  }

  run.phase = 'done';
  describeRun(run);
  upsertSearchAttributes([{ key: PHASE_KEY, value: 'done' }]);
  await condition(allHandlersFinished);
  const final = statusOf(run);
  return { runId: spec.runId, iterations: state.iteration, version: state.version, stopped: state.stopRequested, samples: final.samples };
}

/**
 * The run's own status: between iterations, all of it; while one runs, the ledger as that iteration
 * started and its workflow id, whose progress query the client merges in (src/temporal/runStatus.ts).
 */
function statusOf(run: RunContext): RunStatus {
  const { spec, state } = run;
  const ledger = state.ledger;
  const states = samplesByState(ledger);
  return {
    runId: spec.runId,
    strategy: spec.layout.strategy,
    iteration: state.iteration,
    iterationsTotal: spec.iterations,
    phase: run.phase,
    version: state.version,
    paused: state.paused,
    pauseRequested: run.pauseRequested,
    stopRequested: state.stopRequested,
    pool: undefined,
    samples: {
      admitted: ledger.counters.admitted,
      trained: ledger.counters.batched,
      dropped: { ...ledger.counters.dropped },
      running: states.running.length,
      completedWaiting: states.completed.length,
      waiting: states.waiting.length,
    },
    batchSize: state.batchSize,
    shrinkOverride: state.shrinkOverride ?? undefined,
    lastIteration: state.lastIteration ?? undefined,
    lastError: state.lastError ?? undefined,
    ...(run.runningIteration === undefined ? {} : { iterationWorkflowId: run.runningIteration }),
    ...((state.lostRanks ?? []).length > 0 ? { lostRanks: state.lostRanks } : {}),
    ...(state.paused && state.pausedForLostRanks === true ? { pausedForLostRanks: true as const } : {}),
    ...(state.tokenLags === undefined ? {} : { staleness: runStalenessFigures(spec.staleness?.policy ?? 'drop', ledger.counters, state.tokenLags) }),
    ...(state.engineKvCapacity === undefined && spec.kvCapacityTokensPerRank === undefined
      ? {}
      : { kvCapacity: { reported: state.engineKvCapacity ?? [], configuredPerRank: spec.kvCapacityTokensPerRank ?? null } }),
  };
}

/**
 * The run's page in the Temporal UI ("current details", markdown): where the run stands between
 * and during iterations, and what an operator can do about a pause. Not history: no command.
 */
function describeRun(run: RunContext): void {
  const { spec, state } = run;
  const ledger = state.ledger.counters;
  const standing =
    run.phase === 'done'
      ? state.stopRequested
        ? `**stopped** by the operator after ${state.iteration} of ${spec.iterations} iterations`
        : `**finished**: ${state.iteration} of ${spec.iterations} iterations`
      : state.paused
        ? `**paused** after ${state.iteration} of ${spec.iterations} iterations${state.lastError === null ? '' : `: ${state.lastError.replace(/^paused: /, '')}`}; ${
            state.pausedForLostRanks === true ? `it goes on by itself once \`timeshare return-ranks ${spec.runId} …\` returns enough ranks` : `go on with \`timeshare resume ${spec.runId}\``
          }`
        : run.runningIteration !== undefined
          ? `iteration ${state.iteration + 1} of ${spec.iterations} running: \`${run.runningIteration}\` (its page shows its phase)`
          : `between iterations: ${state.iteration} of ${spec.iterations} done`;
  const requests = [run.pauseRequested ? 'pause requested (after this iteration)' : '', state.stopRequested && run.phase !== 'done' ? 'stop requested (after this iteration)' : ''].filter((line) => line !== '');
  const lost = state.lostRanks ?? [];
  recordLostRanks(spec, lost.length);
  setCurrentDetails(
    [
      standing,
      ...requests,
      `weights v${state.version} · batch size ${state.batchSize} · samples trained ${ledger.batched}, admitted ${ledger.admitted}`,
      ...(lost.length > 0 ? [`lost ranks ${lost.join(',')} (\`timeshare return-ranks ${spec.runId} …\` once their node is back)`] : []),
    ].join('\n\n'),
  );
}

function registerHandlers(run: RunContext): void {
  const { spec, state } = run;
  // Updates change what the run's page says: said again before the answer.
  const status = () => (describeRun(run), statusOf(run));
  setHandler(statusQuery, () => statusOf(run));
  setHandler(pauseUpdate, () => ((run.pauseRequested = true), status()), { validator: () => rejectIfStopping(state) });
  setHandler(
    resumeUpdate,
    () => {
      state.paused = false;
      run.pauseRequested = false;
      state.lastError = null;
      return status();
    },
    {
      validator: () => {
        if (!state.paused && !run.pauseRequested) throw new Error('the run is not paused');
      },
    },
  );
  setHandler(returnRanksUpdate, (request) => (returnRanks(run, request.ranks), status()), {
    validator: (request) => {
      const { ranks } = updateSchemas().returnRanks.parse(request);
      removeLostRanks(spec.layout, state.lostRanks ?? [], ranks);
    },
  });
  setHandler(stopUpdate, () => ((state.stopRequested = true), status()), { validator: () => rejectIfStopping(state) });
  setHandler(setBatchSizeUpdate, (request) => ((state.batchSize = request.batchSize), status()), {
    validator: (request) => {
      const { batchSize } = updateSchemas().batchSize.parse(request);
      // A batch must be able to fill from the live samples the rollout keeps going.
      checkIntRange('batchSize', batchSize, 1, spec.maxConcurrentSamples);
    },
  });
  setHandler(setShrinkSetUpdate, (request) => ((state.shrinkOverride = request.ranks), status()), {
    validator: (request) => {
      const { ranks } = updateSchemas().shrinkSet.parse(request);
      if (ranks !== null) planShrink(spec.layout, ranks);
    },
  });
}

/** The operator returned lost ranks: they rejoin at the next iteration; a run paused for them may go on. */
function returnRanks(run: RunContext, ranks: RankId[]): void {
  const { spec, state } = run;
  state.lostRanks = removeLostRanks(spec.layout, state.lostRanks ?? [], ranks);
  state.rejoinRanks = [...new Set([...(state.rejoinRanks ?? []), ...ranks])].sort((a, b) => a - b);
  if (state.pausedForLostRanks && planWithLostRanks(spec.layout, state.lostRanks, state.shrinkOverride ?? undefined).viable) {
    state.paused = false;
    state.pausedForLostRanks = false;
    state.lastError = null;
  }
}

/**
 * Between iterations: honours a pause, continues-as-new when the history asks for it, and pauses
 * if the lost ranks leave the pool below the strategy minimum. 'go' starts the next iteration.
 */
async function beforeIteration(run: RunContext): Promise<'go' | 'stop' | 'again'> {
  const { spec, state } = run;
  if (run.pauseRequested) {
    state.paused = true;
    run.pauseRequested = false;
  }
  if (state.paused) {
    run.phase = 'starting';
    describeRun(run);
    await condition(() => !state.paused || state.stopRequested);
    if (state.stopRequested) return 'stop';
  }
  const info = workflowInfo();
  const overBudget = info.historySize > RUN_HISTORY_BYTES_BUDGET;
  // A new current Worker Deployment version: this execution stays pinned to its own, the next
  // one (and so the next iteration, a child that inherits its parent's version) starts on it.
  const newVersion = info.targetWorkerDeploymentVersionChanged;
  if (run.iterationsThisExecution >= spec.iterationsPerRunExecution || info.continueAsNewSuggested || overBudget || newVersion) {
    await condition(allHandlersFinished);
    await continueAsNewOnCurrentVersion({ spec, state: { ...state, paused: state.paused || run.pauseRequested } });
  }
  const lostRanks = state.lostRanks ?? [];
  if (lostRanks.length > 0) {
    const plan = planWithLostRanks(spec.layout, lostRanks, state.shrinkOverride ?? undefined);
    if (!plan.viable) {
      state.paused = true;
      state.pausedForLostRanks = true;
      state.lastError =
        `paused: ranks ${lostRanks.join(',')} are lost and ${plan.reason}; ` +
        `bring their node back, then 'timeshare return-ranks ${spec.runId} ${lostRanks.join(',')}'`;
      run.phase = 'recovering';
      return 'again';
    }
  }
  return 'go';
}

/** Runs the current iteration as a child workflow and takes in its result or its failure. */
async function runIterationChild(run: RunContext): Promise<void> {
  const { spec, state } = run;
  const lostRanks = state.lostRanks ?? [];
  upsertSearchAttributes([
    { key: ITERATION_KEY, value: state.iteration },
    { key: PHASE_KEY, value: 'rollout' },
  ]);
  // Ranks returned by the operator before this iteration: it reloads them. Ranks returned while
  // it runs stay in state.rejoinRanks for the next one.
  const rejoining = state.rejoinRanks ?? [];
  const workflowId = iterationWorkflowId(spec.runId, state.iteration);
  run.runningIteration = workflowId;
  describeRun(run);
  // Until this iteration completes, the store may hold what its attempts did beyond the ledger.
  const ledgerMatchesStore = run.ledgerMatchesStore;
  run.ledgerMatchesStore = false;
  let completed: IterationStats | undefined;
  try {
    const result = await executeChild(iterationWorkflow, {
      workflowId,
      staticSummary: `iteration ${state.iteration + 1} of ${spec.iterations}: weights v${state.version} → v${state.version + 1}, batch ${state.batchSize}`,
      args: [
        {
          spec,
          iteration: state.iteration,
          version: state.version,
          ledger: state.ledger,
          batchSize: state.batchSize,
          shrinkOverride: state.shrinkOverride ?? undefined,
          ...(lostRanks.length > 0 ? { lostRanks } : {}),
          ...(rejoining.length > 0 ? { rejoinRanks: rejoining } : {}),
          ...(state.weightGroup === undefined ? {} : { weightGroup: state.weightGroup }),
          ...(state.engineKvCapacity === undefined ? {} : { engineKvCapacity: reportsOfKeptRanks(state.engineKvCapacity, [...lostRanks, ...rejoining]) }),
          ...(ledgerMatchesStore ? { ledgerMatchesStore: true } : {}),
        },
      ],
      retry: { maximumAttempts: 3, initialInterval: '2 seconds', nonRetryableErrorTypes: ['PoolRestoreFailed'] },
      parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      typedSearchAttributes: [
        { key: RUN_ID_KEY, value: spec.runId },
        { key: STRATEGY_KEY, value: spec.layout.strategy },
        { key: ITERATION_KEY, value: state.iteration },
        { key: PHASE_KEY, value: 'starting' },
      ],
    });
    // A worker that cannot decode the result (one without the run's codec) must not take it
    // into the run's state: its workflow task fails and is retried (see the catch below).
    if (isUndecodable(result)) throw new UndecodableIterationResult(result.undecodablePayload);
    state.version = result.version;
    state.ledger = result.ledger;
    state.weightGroup = result.weightGroup;
    noteKvCapacityReports(spec, state.engineKvCapacity ?? [], result.engineKvCapacity ?? []);
    if (result.engineKvCapacity !== undefined) state.engineKvCapacity = result.engineKvCapacity;
    state.lastIteration = result.stats;
    completed = result.stats;
    if (result.stats.tokenLags !== undefined) state.tokenLags = mergeLagHistograms(state.tokenLags ?? {}, result.stats.tokenLags);
    state.lastError = null;
    if (state.rejoinRanks !== undefined) state.rejoinRanks = state.rejoinRanks.filter((rank) => !rejoining.includes(rank));
    state.iteration += 1;
    run.iterationsThisExecution += 1;
    run.ledgerMatchesStore = true;
  } catch (error) {
    if (error instanceof UndecodableIterationResult) throw error;
    onIterationFailure(run, error);
  } finally {
    run.runningIteration = undefined;
    describeRun(run);
  }
  // Once the run's state has taken the iteration in whole: a failure here is not the iteration's.
  if (completed !== undefined) recordIteration(spec, completed);
}

/** The KV capacity reports without those of lost or returning ranks: a returned rank's engine may be another one, read again. */
function reportsOfKeptRanks(reports: readonly RankKvCapacity[], replaced: readonly RankId[]): RankKvCapacity[] {
  return reports.filter(({ rank }) => !replaced.includes(rank));
}

/**
 * Says once per rank (a report that changed) what the admission's KV cap will count on: a rank
 * whose engine reports no capacity leaves the run without a KV cap unless the config gives one.
 */
function noteKvCapacityReports(spec: RunSpec, before: readonly RankKvCapacity[], after: readonly RankKvCapacity[]): void {
  const known = new Map(before.map(({ rank, tokens }) => [rank, tokens]));
  const changed = after.filter(({ rank, tokens }) => known.get(rank) !== tokens);
  const silent = changed.filter(({ tokens }) => tokens === null).map(({ rank }) => rank);
  const reporting = changed.filter(({ tokens }) => tokens !== null);
  if (reporting.length > 0) log.info(`KV capacity reported by the engines (tokens): ${reporting.map(({ rank, tokens }) => `rank ${rank}: ${tokens}`).join(', ')}`);
  if (silent.length === 0) return;
  const configured = spec.kvCapacityTokensPerRank;
  log.warn(
    `the engines of ranks ${silent.join(',')} report no KV capacity: ` +
      (configured === undefined ? 'no KV cap on running samples while they roll out (set rollout.kvCapacityTokensPerRank to give one)' : `the KV cap counts rollout.kvCapacityTokensPerRank = ${configured} for them`),
  );
}

/** A plain Error, not a failure of the iteration: it fails the workflow task, which is retried. */
class UndecodableIterationResult extends Error {
  constructor(reason: string) {
    super(`iteration result: payload cannot be decoded: ${reason}`);
    this.name = 'UndecodableIterationResult';
  }
}

function onIterationFailure(run: RunContext, error: unknown): void {
  const { spec, state } = run;
  const lost = ranksLost(error);
  if (lost !== undefined) {
    // Ranks lost: the pool was restored without them; start the iteration again on what is left
    // (the check before each iteration pauses the run if that is below the strategy minimum).
    // From the current state: a rank returned while the iteration ran is no longer lost.
    state.lostRanks = addLostRanks(spec.layout, state.lostRanks ?? [], lost.ranks);
    state.rejoinRanks = (state.rejoinRanks ?? []).filter((rank) => !lost.ranks.includes(rank));
    state.lastError = describeError(error);
    if (lost.trainerNode !== null) {
      state.paused = true;
      state.lastError = `paused: trainer node ${lost.trainerNode} is lost (${describeError(error)}); bring it back, then 'timeshare resume ${spec.runId}'`;
      run.phase = 'recovering';
    }
    return;
  }
  // The iteration restored the pool before failing (or could not, and said so). Pause with
  // the reason visible in status; `resume` retries the same iteration id.
  state.lastError = describeError(error);
  state.paused = true;
  run.phase = 'recovering';
}

function rejectIfStopping(state: RunState): void {
  if (state.stopRequested) throw ApplicationFailure.nonRetryable('the run is already stopping');
}

/** The ranks an iteration reported lost (its RanksLost failure), if that is why it failed. */
function ranksLost(error: unknown): { ranks: RankId[]; trainerNode: number | null } | undefined {
  if (!(error instanceof ChildWorkflowFailure) || !(error.cause instanceof ApplicationFailure) || error.cause.type !== 'RanksLost') return undefined;
  const details = error.cause.details?.[0] as { ranks?: unknown; trainerNode?: unknown } | undefined;
  const ranks = details?.ranks;
  if (!Array.isArray(ranks) || !ranks.every((rank) => Number.isInteger(rank))) {
    throw ApplicationFailure.nonRetryable(`RanksLost failure without a rank list: ${JSON.stringify(details)}`, 'ValidationError');
  }
  return { ranks: ranks as RankId[], trainerNode: typeof details?.trainerNode === 'number' ? details.trainerNode : null };
}
