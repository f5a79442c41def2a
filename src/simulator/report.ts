/**
 * The figures of a simulated run, as the seed experiment reports them: rollout throughput,
 * iteration time, GPU busy fraction by role, idle (bubble) fraction, timeout rate and the share
 * of shrink / weight-sync overhead.
 */
import { ksDistance, lagSummary, sampleUtilization, type LagSummary, type Utilization } from '../gpu/staleness';
import { TIMELINE_ROLES, type TimelineRole } from '../timeline/types';
import type { SimulationResult } from './simulator';

export interface StrategyReport {
  label: string;
  strategy: string;
  gpus: number;
  iterations: number;
  virtualSeconds: number;
  /** Trained trajectories per virtual second. */
  trajectoriesPerSecond: number;
  /**
   * Rollout throughput: decoded tokens not regenerated (those of trajectories dropped later, or
   * still live at the end, included), per virtual second.
   */
  generatedTokensPerSecond: number;
  /** Decoded tokens thrown away (interrupted turns regenerated), as a share of all decoded tokens. */
  discardedTokenShare: number;
  meanIterationSeconds: number;
  /** Fraction of GPU time per role (sums to 1). */
  gpuTimeByRole: Record<TimelineRole, number>;
  /** GPU time doing useful work: rollout or train. */
  busyFraction: number;
  idleFraction: number;
  /** Trajectories dropped by the environment timeout / trajectories that ended (completed or timed out). */
  timeoutRate: number;
  timeouts: number;
  staleDrops: number;
  /** Admitted trajectories lost to the environment timeout or the staleness bound, per trajectory admitted. */
  lostRate: number;
  /** Wall-clock share of the run spent in the shrink phase (stop released shards + offload). */
  shrinkShare: number;
  /** Wall-clock share spent in weight sync + expand (reload), and the weight-sync part relative to training time. */
  syncShare: number;
  syncShareOfTraining: number;
  migratedPerIteration: number;
  staleness: StalenessReport;
  /** KV-cache capacity of one rollout rank (tokens; Infinity under the assumed-rate model). */
  kvCapacityTokensPerRank: number;
  /**
   * Rollout occupancy weighted by work: tokens decoded over the tokens the ranks would have decoded
   * at their running batch without pause (1 = no prefill stall while requests were running).
   * A rank with one request counts for one request's worth, not as busy.
   */
  rolloutWorkOccupancy: number;
  /**
   * Shares of all GPU time that the decoded tokens need at the rank's peak (a full batch of
   * maxRunningRequests with a full KV cache) and the training at its rate.
   */
  rolloutWorkShare: number;
  trainWorkShare: number;
  /**
   * The fraction of the ideal bound reached: the GPU time the trained trajectories need with every
   * GPU decoding at its peak and training at its rate, no prefill, queueing or transitions, over
   * the GPU time the run took.
   */
  idealBoundFraction: number;
  /** Context tokens prefilled per token decoded (re-prefill after eviction, flush or migration included). */
  prefillPerDecodedToken: number;
  /** Generate calls that waited for KV room or a running slot, per call. */
  queuedCallShare: number;
  /** Trajectories the turn limit and the token budget cut, and the trajectories admitted. */
  cutByTurnLimit: number;
  cutByTokenLimit: number;
  admitted: number;
}

/** The cost of the staleness policy (docs/design.md §5.2 "Staleness"). */
export interface StalenessReport {
  policy: string;
  /** Trained ÷ decided samples (trained + dropped), in trajectories and in decoded tokens. */
  utilization: Utilization;
  /** Version lag of trained generated tokens behind the version they were trained from. */
  tokenLag: LagSummary;
  /** Trained tokens beyond rollout.staleness.maxTokenLag (left out of the loss). */
  tokensOverLagLimit: number;
  /** Long-tail bias: KS distance between turns per trajectory of trained and decided samples. */
  turnsKs: number;
  /** The same against every admitted sample, the ones still live at the end of the run included (censored by the run's end). */
  turnsKsAllAdmitted: number;
  liveAtEnd: number;
}

export function stalenessReport(result: SimulationResult): StalenessReport {
  const s = result.totals.staleness;
  return {
    policy: result.staleness.policy,
    utilization: sampleUtilization({
      trained: result.totals.trainedSamples,
      discarded: s.discarded,
      trainedTokens: s.trainedGeneratedTokens,
      decodedTokens: s.trainedDecodedTokens + s.discardedDecodedTokens,
    }),
    tokenLag: lagSummary(s.lagHistogram),
    tokensOverLagLimit: s.tokensOverLagLimit,
    turnsKs: ksDistance(s.trainedTurns, s.decidedTurns),
    turnsKsAllAdmitted: ksDistance(s.trainedTurns, s.admittedTurns),
    liveAtEnd: s.liveAtEnd,
  };
}

function phaseTotal(result: SimulationResult, phase: string): number {
  return result.iterations.reduce((sum, record) => sum + ((record.phaseMs as Record<string, number | undefined>)[phase] ?? 0), 0);
}

export function strategyReport(result: SimulationResult): StrategyReport {
  const { totals } = result;
  const seconds = totals.virtualMs / 1000;
  const gpuMsTotal = TIMELINE_ROLES.reduce((sum, role) => sum + result.gpuMsByRole[role], 0);
  const gpuTimeByRole = Object.fromEntries(TIMELINE_ROLES.map((role) => [role, gpuMsTotal > 0 ? result.gpuMsByRole[role] / gpuMsTotal : 0])) as Record<
    TimelineRole,
    number
  >;
  const timeouts = totals.dropped['environment-timeout'];
  const ended = totals.completedTrajectories + timeouts;
  const trainMs = phaseTotal(result, 'train');
  const syncMs = phaseTotal(result, 'sync');
  const iterations = result.iterations.length;
  const admitted = result.iterations.reduce((sum, record) => sum + record.admitted, 0);
  return {
    label: result.label,
    strategy: result.strategy,
    gpus: result.gpus,
    iterations,
    virtualSeconds: seconds,
    trajectoriesPerSecond: totals.trainedSamples / seconds,
    generatedTokensPerSecond: (totals.decodedTokens - totals.discardedTokens) / seconds,
    discardedTokenShare: totals.decodedTokens > 0 ? totals.discardedTokens / totals.decodedTokens : 0,
    meanIterationSeconds: seconds / iterations,
    gpuTimeByRole,
    busyFraction: gpuTimeByRole.rollout + gpuTimeByRole.train,
    idleFraction: gpuTimeByRole.idle,
    timeoutRate: ended > 0 ? timeouts / ended : 0,
    timeouts,
    staleDrops: totals.dropped.stale,
    lostRate: admitted > 0 ? (timeouts + totals.dropped.stale) / admitted : 0,
    shrinkShare: phaseTotal(result, 'shrink') / totals.virtualMs,
    syncShare: (syncMs + phaseTotal(result, 'expand')) / totals.virtualMs,
    syncShareOfTraining: trainMs > 0 ? (iterations * result.weightSyncMs) / trainMs : 0,
    migratedPerIteration: totals.migrated / iterations,
    staleness: stalenessReport(result),
    kvCapacityTokensPerRank: result.kvCapacityTokensPerRank,
    ...workFigures(result, gpuMsTotal),
    prefillPerDecodedToken: result.rankTotals.decodedTokens > 0 ? result.rankTotals.prefilledTokens / result.rankTotals.decodedTokens : 0,
    queuedCallShare: result.rankTotals.admitted > 0 ? result.rankTotals.queuedAdmissions / result.rankTotals.admitted : 0,
    cutByTurnLimit: totals.cutByTurnLimit,
    cutByTokenLimit: totals.cutByTokenLimit,
    admitted,
  };
}

function workFigures(result: SimulationResult, gpuMsTotal: number): Pick<StrategyReport, 'rolloutWorkOccupancy' | 'rolloutWorkShare' | 'trainWorkShare' | 'idealBoundFraction'> {
  const peakPerGpu = result.rankPeakDecodeTokensPerSecond / result.gpusPerRank;
  const trainPerGpu = result.trainTokensPerSecondPerGpu;
  const gpuSeconds = gpuMsTotal / 1000;
  const decodeAtPeak = result.rankTotals.decodedTokens / peakPerGpu;
  const trainAtRate = result.totals.trainedTokens / trainPerGpu;
  const ideal = result.totals.trainedGeneratedTokens / peakPerGpu + trainAtRate;
  const potential = result.rankTotals.potentialTokens;
  return {
    rolloutWorkOccupancy: potential > 0 ? result.rankTotals.decodedTokens / potential : 0,
    rolloutWorkShare: gpuSeconds > 0 ? decodeAtPeak / gpuSeconds : 0,
    trainWorkShare: gpuSeconds > 0 ? trainAtRate / gpuSeconds : 0,
    idealBoundFraction: gpuSeconds > 0 ? ideal / gpuSeconds : 0,
  };
}
