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
  continueAsNew,
  executeChild,
  log,
  ParentClosePolicy,
  patched,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import { addLostRanks, emptyLedger, planShrink, planWithLostRanks, removeLostRanks, samplesByState, type SampleLedger } from '../gpu';
import type { RankId } from '../gpu/layout';
import { checkIntRange } from '../gpu/validation';
import { RUN_HISTORY_BYTES_BUDGET } from '../pipeline/historyBudget';
import { iterationWorkflowId } from '../pipeline/naming';
import type { IterationProgress, IterationStats, Phase, RunSpec, RunStatus } from '../pipeline/types';
import { describeError } from '../pipeline/errors';
import { ITERATION_KEY, PHASE_KEY, RUN_ID_KEY, STRATEGY_KEY } from '../temporal/searchAttributes';
import { assertDecoded } from '../temporal/payloadConverter';
import { iterationWorkflow } from './iteration';
import { judgeProgress } from './progressAcceptance';
import {
  batchSizeUpdateSchema,
  iterationProgressSchema,
  iterationProgressSignal,
  LOST_RANKS_PATCH,
  pauseUpdate,
  resumeUpdate,
  returnRanksUpdate,
  returnRanksUpdateSchema,
  setBatchSizeUpdate,
  setShrinkSetUpdate,
  shrinkSetUpdateSchema,
  statusQuery,
  stopUpdate,
} from './signals';

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
  // Lost-node handling (patched: a run recorded before it replays without it, docs/design.md §5.2).
  const handlesLostRanks = patched(LOST_RANKS_PATCH);
  let pauseRequested = false;
  let progress: IterationProgress | undefined;
  /** Given to the running iteration; its progress reports must carry it. */
  let progressToken: string | undefined;
  let rejectedSignals: RunStatus['rejectedSignals'];
  const progressSchema = iterationProgressSchema(spec.layout);
  let phase: Phase = state.iteration >= spec.iterations ? 'done' : 'starting';

  const status = (): RunStatus => {
    const ledger = state.ledger;
    const states = samplesByState(ledger);
    return {
      runId: spec.runId,
      strategy: spec.layout.strategy,
      iteration: state.iteration,
      iterationsTotal: spec.iterations,
      phase: progress?.phase ?? phase,
      version: progress?.version ?? state.version,
      paused: state.paused,
      pauseRequested,
      stopRequested: state.stopRequested,
      pool: progress?.pool,
      samples: {
        admitted: ledger.counters.admitted,
        // The current iteration's batch counts as trained once its train step is done.
        trained: ledger.counters.batched + (progress !== undefined && trainStepDone(progress.phase) ? progress.batchSamples : 0),
        dropped: { ...ledger.counters.dropped },
        running: progress?.samplesRunning ?? states.running.length,
        completedWaiting: progress?.samplesCompleted ?? states.completed.length,
        waiting: progress?.samplesWaiting ?? states.waiting.length,
      },
      batchSize: state.batchSize,
      shrinkOverride: state.shrinkOverride ?? undefined,
      lastIteration: state.lastIteration ?? undefined,
      lastError: state.lastError ?? undefined,
      ...(rejectedSignals === undefined ? {} : { rejectedSignals }),
      ...((state.lostRanks ?? []).length > 0 ? { lostRanks: state.lostRanks } : {}),
    };
  };

  setHandler(statusQuery, status);
  setHandler(iterationProgressSignal, (update: unknown) => {
    // A signal cannot be rejected and must not fail the workflow: a bad or forged one is ignored, visibly.
    const verdict = judgeProgress(update, progressSchema, { iteration: state.iteration, token: progressToken, current: progress });
    if (verdict.kind === 'rejected') {
      rejectedSignals = { count: (rejectedSignals?.count ?? 0) + 1, last: verdict.reason };
      log.warn(verdict.reason);
    } else if (verdict.kind === 'accepted') {
      progress = verdict.report;
    }
  });
  setHandler(
    pauseUpdate,
    () => {
      pauseRequested = true;
      return status();
    },
    { validator: () => rejectIfStopping(state) },
  );
  setHandler(
    resumeUpdate,
    () => {
      state.paused = false;
      pauseRequested = false;
      state.lastError = null;
      return status();
    },
    {
      validator: () => {
        if (!state.paused && !pauseRequested) throw new Error('the run is not paused');
      },
    },
  );
  setHandler(
    returnRanksUpdate,
    (request) => {
      state.lostRanks = removeLostRanks(spec.layout, state.lostRanks ?? [], request.ranks);
      state.rejoinRanks = [...new Set([...(state.rejoinRanks ?? []), ...request.ranks])].sort((a, b) => a - b);
      if (state.pausedForLostRanks && planWithLostRanks(spec.layout, state.lostRanks, state.shrinkOverride ?? undefined).viable) {
        state.paused = false;
        state.pausedForLostRanks = false;
        state.lastError = null;
      }
      return status();
    },
    {
      validator: (request) => {
        const { ranks } = returnRanksUpdateSchema.parse(request);
        removeLostRanks(spec.layout, state.lostRanks ?? [], ranks);
      },
    },
  );
  setHandler(
    stopUpdate,
    () => {
      state.stopRequested = true;
      return status();
    },
    { validator: () => rejectIfStopping(state) },
  );
  setHandler(
    setBatchSizeUpdate,
    (request) => {
      state.batchSize = request.batchSize;
      return status();
    },
    {
      validator: (request) => {
        const { batchSize } = batchSizeUpdateSchema.parse(request);
        // A batch must be able to fill from the live samples the rollout keeps going.
        checkIntRange('batchSize', batchSize, 1, spec.maxConcurrentSamples);
      },
    },
  );
  setHandler(
    setShrinkSetUpdate,
    (request) => {
      state.shrinkOverride = request.ranks;
      return status();
    },
    {
      validator: (request) => {
        const { ranks } = shrinkSetUpdateSchema.parse(request);
        if (ranks !== null) planShrink(spec.layout, ranks);
      },
    },
  );

  upsertSearchAttributes([
    { key: RUN_ID_KEY, value: spec.runId },
    { key: STRATEGY_KEY, value: spec.layout.strategy },
    { key: ITERATION_KEY, value: state.iteration },
  ]);

  let iterationsThisExecution = 0;
  while (state.iteration < spec.iterations && !state.stopRequested) {
    if (pauseRequested) {
      state.paused = true;
      pauseRequested = false;
    }
    if (state.paused) {
      phase = 'starting';
      progress = undefined;
      await condition(() => !state.paused || state.stopRequested);
      if (state.stopRequested) break;
    }
    const info = workflowInfo();
    const overBudget = info.historySize > RUN_HISTORY_BYTES_BUDGET && patched('run-history-byte-budget');
    if (iterationsThisExecution >= spec.iterationsPerRunExecution || info.continueAsNewSuggested || overBudget) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof runWorkflow>({ spec, state: { ...state, paused: state.paused || pauseRequested } });
    }

    const lostRanks = state.lostRanks ?? [];
    if (handlesLostRanks && lostRanks.length > 0) {
      const plan = planWithLostRanks(spec.layout, lostRanks, state.shrinkOverride ?? undefined);
      if (!plan.viable) {
        state.paused = true;
        state.pausedForLostRanks = true;
        state.lastError =
          `paused: ranks ${lostRanks.join(',')} are lost and ${plan.reason}; ` +
          `bring their node back, then 'timeshare return-ranks ${spec.runId} ${lostRanks.join(',')}'`;
        phase = 'recovering';
        continue;
      }
    }

    upsertSearchAttributes([
      { key: ITERATION_KEY, value: state.iteration },
      { key: PHASE_KEY, value: 'rollout' },
    ]);
    progress = undefined;
    // Ranks returned by the operator before this iteration: it reloads them. Ranks returned while
    // it runs stay in state.rejoinRanks for the next one.
    const rejoining = state.rejoinRanks ?? [];
    progressToken = uuid4();
    try {
      const result = await executeChild(iterationWorkflow, {
        workflowId: iterationWorkflowId(spec.runId, state.iteration),
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
            progressToken,
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
      state.version = result.version;
      state.ledger = result.ledger;
      progress = undefined;
      state.lastIteration = result.stats;
      state.lastError = null;
      if (state.rejoinRanks !== undefined) state.rejoinRanks = state.rejoinRanks.filter((rank) => !rejoining.includes(rank));
      state.iteration += 1;
      iterationsThisExecution += 1;
    } catch (error) {
      const lost = handlesLostRanks ? ranksLost(error) : undefined;
      if (lost !== undefined) {
        // Ranks lost: the pool was restored without them; start the iteration again on what is left
        // (the check above pauses the run if that is below the strategy minimum).
        // From the current state: a rank returned while the iteration ran is no longer lost.
        state.lostRanks = addLostRanks(spec.layout, state.lostRanks ?? [], lost.ranks);
        state.rejoinRanks = (state.rejoinRanks ?? []).filter((rank) => !lost.ranks.includes(rank));
        state.lastError = describeError(error);
        if (lost.trainerNode !== null) {
          state.paused = true;
          state.lastError = `paused: trainer node ${lost.trainerNode} is lost (${describeError(error)}); bring it back, then 'timeshare resume ${spec.runId}'`;
          phase = 'recovering';
        }
        continue;
      }
      // The iteration restored the pool before failing (or could not, and said so). Pause with
      // the reason visible in status; `resume` retries the same iteration id.
      state.lastError = describeError(error);
      state.paused = true;
      phase = 'recovering';
    }
  }

  phase = 'done';
  progress = undefined;
  upsertSearchAttributes([{ key: PHASE_KEY, value: 'done' }]);
  await condition(allHandlersFinished);
  const final = status();
  return { runId: spec.runId, iterations: state.iteration, version: state.version, stopped: state.stopRequested, samples: final.samples };
}

/** Phases after the train step (the batch is trained; shards stop, weights sync, ranks expand). */
function trainStepDone(phase: Phase): boolean {
  return phase === 'stop' || phase === 'sync' || phase === 'expand' || phase === 'done';
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
