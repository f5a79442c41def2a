/**
 * Staleness: what becomes of a sample that outlives its weight version, how many new samples may
 * start ahead of training, and the figures that show what a policy costs (sample utilization,
 * version lag of trained tokens, long-tail bias). Pure and deterministic; the iteration program's
 * admission decision (src/iteration/admission.ts, run by the workflow and the simulator) calls
 * `carryOverStaleIds` at carry-over and `admissionRoom` at every admission (docs/design.md §5.2
 * "Staleness").
 */
import type { RankId } from './layout';
import { staleIds, type SampleLedger } from './ledger';
import { checkIntRange, checkPostcondition, ValidationError } from '../validation/patterns';

/**
 * 'resume' (default): no finished work is discarded for its age. A live sample continues with the
 * current weights after each sync (partial rollout across versions); every token records the
 * version that generated it, and the trainer corrects for the lag with the behaviour logprobs.
 * 'drop': ROLL's rule, kept as the baseline: a sample whose start version lags the version to be
 * trained by more than the async ratio is dropped at carry-over, after it ran (rollout_scheduler.py,
 * `GroupQueue.advance_step`).
 */
export const STALENESS_POLICIES = ['resume', 'drop'] as const;
export type StalenessPolicy = (typeof STALENESS_POLICIES)[number];
export const DEFAULT_STALENESS_POLICY: StalenessPolicy = 'resume';

/** Live samples the carry-over drops as stale before an iteration that trains from `trainVersion`. */
export function carryOverStaleIds(ledger: SampleLedger, trainVersion: number, asyncRatio: number, policy: StalenessPolicy): number[] {
  checkIntRange('carry-over: train version', trainVersion, 0, Number.MAX_SAFE_INTEGER);
  checkIntRange('carry-over: async ratio', asyncRatio, 0, Number.MAX_SAFE_INTEGER);
  if (policy === 'drop') return staleIds(ledger, trainVersion, asyncRatio);
  if (policy === 'resume') return [];
  throw new ValidationError('VAL_SUBSET', 'staleness policy', JSON.stringify(policy), `must be one of ${STALENESS_POLICIES.join(', ')}`);
}

export interface AdmissionInput {
  policy: StalenessPolicy;
  /** Live samples now (the ledger's, which excludes a batch already sealed). */
  live: number;
  /** Of the live samples, those still rolling out (not completed). */
  running: number;
  batchSize: number;
  asyncRatio: number;
  maxConcurrentSamples: number;
  /** Whether this iteration's batch is already sealed (admission during train ‖ long tail). */
  batchSealed: boolean;
  /** The KV cap on running samples ('resume'; `kvRunningCap`); absent: none. */
  kvRunningCap?: number;
}

/**
 * Samples rolling out at once under 'resume': the batch size, AReaL's default for
 * `max_concurrent_rollouts` (inclusionAI/AReaL, workflow_executor.py: `max_concurrent_rollouts or
 * consumer_batch_size`), and no more than the KV cap when there is one. Completed samples waiting
 * for a batch do not count: they hold no engine.
 */
export function maxRunningSamples(batchSize: number, maxConcurrentSamples: number, kvRunningCap?: number): number {
  return Math.min(batchSize, maxConcurrentSamples, kvRunningCap ?? Infinity);
}

/** What the run has trained so far, for the KV cap: samples whose context is known, Σ and Σ² of their final contexts (tokens). */
export interface TrainedContext {
  samples: number;
  tokens: number;
  squaredTokens: number;
}

/** Σ L and Σ L² over final contexts L (tokens): a sealed batch's share of `TrainedContext`, as its manifest records it. */
export function contextSums(contexts: readonly number[]): { tokens: number; squaredTokens: number } {
  let tokens = 0;
  let squaredTokens = 0;
  for (const context of contexts) {
    tokens += context;
    squaredTokens += context ** 2;
  }
  return { tokens, squaredTokens };
}

/** What the KV cap is computed from: the engines' capacity and what the run has trained so far. */
export interface KvCapInput {
  /** KV-cache tokens the ranks rolling out hold together (`rollingKvCapacity`). */
  kvCapacityTokens: number;
  /** The ranks rolling out now (the samples admitted go there; the running ones are there). */
  ranksRollingOut: number;
  trainedContext: TrainedContext | undefined;
  /**
   * rollout.maxTokens, the longest context a trajectory reaches: before the run trained a batch
   * with known contexts, the cap counts every rolling sample as growing towards it
   * (`residentContextBeforeTraining`).
   */
  maxContextTokens: number;
}

/**
 * The KV capacity of one rank for the cap: what its engine reports (SGLang `max_total_num_tokens`,
 * vLLM blocks × block size), at most `configured` (rollout.kvCapacityTokensPerRank: an upper bound,
 * and the value for an engine that reports none); undefined when neither is known.
 */
export function rankKvCapacity(reported: number | null | undefined, configured: number | undefined): number | undefined {
  if (reported === null || reported === undefined) return configured;
  checkIntRange('KV cap: KV capacity an engine reported (tokens)', reported, 1, Number.MAX_SAFE_INTEGER);
  return configured === undefined ? reported : Math.min(reported, configured);
}

/**
 * The KV tokens the ranks rolling out hold together (ranks may differ), or undefined unless every
 * one of them is known (`rankKvCapacity`): a cap from some ranks' caches would undercount the rest.
 */
export function rollingKvCapacity(ranks: readonly RankId[], reported: ReadonlyMap<RankId, number | null>, configured: number | undefined): number | undefined {
  let total = 0;
  for (const rank of ranks) {
    const capacity = rankKvCapacity(reported.get(rank), configured);
    if (capacity === undefined) return undefined;
    total += capacity;
  }
  return total;
}

/**
 * The ranks whose engines' KV capacity an iteration reads at its start: those that have not
 * reported it yet (a null report is an engine that reports none: not asked again), unless the
 * config gives the capacity to fall back on. Without the read, a run's first admissions after its
 * first batch (the train ‖ long-tail one) would wait for the shards' own reports, at their end.
 */
export function ranksWithoutKvCapacity(ranks: readonly RankId[], reported: ReadonlyMap<RankId, number | null>, configured: number | undefined): RankId[] {
  if (configured !== undefined) return [];
  return ranks.filter((rank) => !reported.has(rank));
}

/**
 * The KV tokens a rolling sample holds on average, estimated from the trained samples' final
 * contexts L: E[L²] / (2 E[L]). A sample's context grows from its prompt to L over its life, about
 * evenly in time, and its life is about proportional to L; the samples rolling at a given moment
 * are therefore a length-biased draw (long ones roll longer), each halfway through its growth on
 * average. Undefined until a batch with known contexts was trained.
 */
export function residentContextTokens(trained: TrainedContext | undefined): number | undefined {
  return residentContext(trained)?.mean;
}

/** Mean and standard deviation of the KV tokens one rolling sample holds (tokens). */
export interface ResidentContext {
  mean: number;
  sd: number;
}

/**
 * The resident context of a rolling sample as a distribution, under the model of
 * `residentContextTokens`: X = U · L̃, with L̃ the length-biased final context and U uniform on
 * [0, 1] (how far it has grown). E[X] = E[L²] / (2 E[L]); E[X²] = E[U²] · E[L̃²] = E[L³] / (3 E[L]).
 * The ledger knows Σ L and Σ L² only, so E[L³] is taken as a log-normal's, E[L²]³ / E[L]³ (the
 * moment closure of a log-normal, whose k-th moment is exp(kμ + k²σ²/2)): turn counts of agent
 * trajectories are about log-normal (data/README.md), and a context grows about linearly with
 * turns. The variance is then (E[L²] / E[L])² · (E[L²] / (3 E[L]²) − 1/4) ≥ E[X]² / 3 > 0.
 */
export function residentContext(trained: TrainedContext | undefined): ResidentContext | undefined {
  if (trained === undefined || trained.samples === 0) return undefined;
  checkIntRange('KV cap: trained samples', trained.samples, 1, Number.MAX_SAFE_INTEGER);
  checkIntRange('KV cap: trained context tokens', trained.tokens, 0, Number.MAX_SAFE_INTEGER);
  checkPostcondition('KV cap: Σ L² finite and ≥ (Σ L)² / n', Number.isFinite(trained.squaredTokens) && trained.squaredTokens * trained.samples >= trained.tokens ** 2 * (1 - 1e-9), () =>
    JSON.stringify(trained),
  );
  if (trained.tokens === 0) return undefined;
  const m1 = trained.tokens / trained.samples;
  const m2 = trained.squaredTokens / trained.samples;
  const mean = m2 / (2 * m1);
  // max(…, 1): Σ L² ≥ (Σ L)² / n up to float rounding (checked above).
  const dispersion = Math.max(m2 / m1 ** 2, 1);
  const variance = (m2 / m1) ** 2 * (dispersion / 3 - 1 / 4);
  return { mean, sd: Math.sqrt(variance) };
}

/**
 * The resident context of a rolling sample before any batch was trained: the run knows no context
 * yet but its bound, rollout.maxTokens (M). Each sample taken to grow evenly towards M, as in
 * `residentContext` with every L = M: uniform on [0, M], mean M / 2, standard deviation M / √12.
 * The worst case the config allows; the first trained batch replaces it.
 */
export function residentContextBeforeTraining(maxContextTokens: number): ResidentContext {
  checkIntRange('KV cap: max context tokens (rollout.maxTokens)', maxContextTokens, 1, Number.MAX_SAFE_INTEGER);
  return { mean: maxContextTokens / 2, sd: maxContextTokens / Math.sqrt(12) };
}

/**
 * The margin of the KV cap, in standard deviations of the resident contexts one rank holds: the
 * cap keeps their sum within a rank's cache up to one standard deviation above the mean (about
 * one moment in six it overflows, under a normal approximation; each overflow evicts idle
 * prefixes that are then prefilled again). docs/benchmarks.md "Staleness" shows 0.5 / 1 / 1.5 / 2.
 */
export const KV_CAP_MARGIN_SDS = 1;

/**
 * The KV cap on running samples (docs/design.md §5.2): the samples a rank rolling out can hold so
 * that their resident contexts (`residentContext`: mean μ, standard deviation σ each) fit its KV
 * cache c with a margin of `KV_CAP_MARGIN_SDS` (z) standard deviations of their sum: the largest n
 * with n·μ + z·√n·σ ≤ c, times the ranks rolling out (c: their mean capacity), and at least one per
 * rank (a rank serves one sample at its token budget). A rolling sample keeps its context resident
 * between turns (its prefix, reused at its next turn unless evicted); a rank holds few samples, so
 * their sum varies widely around n·μ, and whenever it exceeds the cache an idle sample's prefix is
 * evicted and prefilled again, or a call waits for room. Before the first trained batch, from
 * the context bound alone (`residentContextBeforeTraining`).
 */
export function kvRunningCap(input: KvCapInput): number {
  checkIntRange('KV cap: ranks rolling out', input.ranksRollingOut, 0, Number.MAX_SAFE_INTEGER);
  checkIntRange('KV cap: KV capacity of the ranks rolling out (tokens)', input.kvCapacityTokens, input.ranksRollingOut === 0 ? 0 : 1, Number.MAX_SAFE_INTEGER);
  const resident = residentContext(input.trainedContext) ?? residentContextBeforeTraining(input.maxContextTokens);
  if (input.ranksRollingOut === 0) return 0;
  const perRank = samplesThatFit(input.kvCapacityTokens / input.ranksRollingOut, resident, KV_CAP_MARGIN_SDS);
  return Math.max(input.ranksRollingOut, Math.floor(input.ranksRollingOut * perRank));
}

/** The largest n (real) with n·μ + z·√n·σ ≤ capacity: √n is the positive root of μx² + zσx − capacity. */
function samplesThatFit(capacity: number, { mean, sd }: ResidentContext, margin: number): number {
  const root = (-margin * sd + Math.sqrt((margin * sd) ** 2 + 4 * mean * capacity)) / (2 * mean);
  return root ** 2;
}

/**
 * How many new samples may start now.
 *
 * 'drop' keeps the pipeline's rule: up to maxConcurrentSamples live before the batch, and
 * maxConcurrentSamples − batchSize after it is sealed.
 *
 * 'resume' is AReaL's capacity rule (areal/core/staleness_manager.py, `get_capacity`): the lesser
 * of a concurrency room and a staleness room.
 * - Staleness: samples admitted but not yet trained never exceed the batches of the next
 *   `asyncRatio + 1` versions ((max_staleness + version + 1) × batch − (accepted + running)),
 *   counted per iteration so that a batch-size update cannot make the bound negative for good.
 * - Concurrency: samples rolling out never exceed `maxRunningSamples` (the batch size). A sample
 *   started beyond what the engines can serve at once only queues: it ages (its tokens lag more
 *   once trained) and evicts the prefixes of the samples it waits behind, which then prefill their
 *   whole context again. The program admits again as samples complete (`admissionPoint`), so the
 *   engines stay busy without running ahead.
 */
export function admissionRoom(input: AdmissionInput): number {
  checkIntRange('admission: live samples', input.live, 0, Number.MAX_SAFE_INTEGER);
  checkIntRange('admission: running samples', input.running, 0, input.live);
  checkIntRange('admission: batch size', input.batchSize, 1, Number.MAX_SAFE_INTEGER);
  checkIntRange('admission: async ratio', input.asyncRatio, 0, Number.MAX_SAFE_INTEGER);
  checkIntRange('admission: max concurrent samples', input.maxConcurrentSamples, 1, Number.MAX_SAFE_INTEGER);
  if (input.kvRunningCap !== undefined) checkIntRange('admission: KV cap on running samples', input.kvRunningCap, 0, Number.MAX_SAFE_INTEGER);
  const sealed = input.batchSealed ? input.batchSize : 0;
  const liveRoom = input.maxConcurrentSamples - sealed - input.live;
  if (input.policy === 'drop') return Math.max(0, liveRoom);
  const stalenessRoom = Math.min(liveRoom, (input.asyncRatio + 1) * input.batchSize - sealed - input.live);
  const concurrencyRoom = maxRunningSamples(input.batchSize, input.maxConcurrentSamples, input.kvRunningCap) - input.running;
  return Math.max(0, Math.min(stalenessRoom, concurrencyRoom));
}

/**
 * Admission in steps of an eighth of the running cap: each step costs the control plane an
 * admission and a batch watch (two round trips and one shard per rank placed), and between steps
 * the running samples fall at most that far below the cap.
 */
export const ADMISSION_STEPS_PER_CAP = 8;

/**
 * While the batch fills: after how many completed candidates the program should admit again, or
 * `batchSize` when no admission can happen before the batch ('drop' admits only at the start of
 * an iteration and when every shard ended; under 'resume' a completion frees a running slot, but
 * not room under the staleness bound, which counts completed samples until they are trained).
 */
export function admissionPoint(input: AdmissionInput & { completed: number }): number {
  checkIntRange('admission point: completed samples', input.completed, 0, input.live);
  if (input.policy === 'drop' || input.batchSealed) return input.batchSize;
  const stalenessRoom = admissionRoom({ ...input, running: 0 });
  if (stalenessRoom === 0) return input.batchSize;
  const cap = maxRunningSamples(input.batchSize, input.maxConcurrentSamples, input.kvRunningCap);
  const step = Math.min(stalenessRoom, Math.max(1, Math.ceil(cap / ADMISSION_STEPS_PER_CAP)));
  const completions = Math.max(1, input.running - (cap - step));
  return Math.min(input.batchSize, input.completed + completions);
}

// ---------------------------------------------------------------------------------------------
// Per-token versions
// ---------------------------------------------------------------------------------------------

/** A run of consecutive generated tokens from one weight version. */
export interface VersionSpan {
  version: number;
  tokens: number;
}

/** Appends `tokens` tokens of `version`, merging with the last span when it has the same version. */
export function appendSpan(spans: readonly VersionSpan[], version: number, tokens: number): VersionSpan[] {
  checkIntRange('version span: version', version, 0, Number.MAX_SAFE_INTEGER);
  checkIntRange('version span: tokens', tokens, 0, Number.MAX_SAFE_INTEGER);
  if (tokens === 0) return [...spans];
  const last = spans.at(-1);
  if (last?.version === version) return [...spans.slice(0, -1), { version, tokens: last.tokens + tokens }];
  return [...spans, { version, tokens }];
}

/** One version per token, from spans. */
export function expandSpans(spans: readonly VersionSpan[]): number[] {
  return spans.flatMap((span) => Array.from({ length: span.tokens }, () => span.version));
}

export function spanTokens(spans: readonly VersionSpan[]): number {
  return spans.reduce((sum, span) => sum + span.tokens, 0);
}

/**
 * The hard limit on token lag (rollout.staleness.maxTokenLag): a generated token whose version lags
 * the trained version by more stays in the trajectory as context but is left out of the loss (mask
 * 0). The trajectory is still trained on its fresher tokens and its reward; see docs/design.md §5.2.
 */
export function withinLagLimit(tokenVersion: number, trainVersion: number, maxTokenLag: number | undefined): boolean {
  const lag = trainVersion - tokenVersion;
  if (lag < 0) {
    throw new ValidationError('VAL_INT_RANGE', 'token version', String(tokenVersion), `a token of a batch trained from v${trainVersion} cannot come from a later version`);
  }
  return maxTokenLag === undefined || lag <= maxTokenLag;
}

// ---------------------------------------------------------------------------------------------
// Figures: version lag of trained tokens, sample utilization, long-tail bias
// ---------------------------------------------------------------------------------------------

/** Trained tokens by version lag (lag → tokens). JSON-friendly: keys are decimal lags. */
export type LagHistogram = Record<string, number>;

/** Adds a trained trajectory's generated tokens to `histogram`, at their lag behind `trainVersion`. */
export function addTokenLags(histogram: LagHistogram, spans: readonly VersionSpan[], trainVersion: number): LagHistogram {
  const next = { ...histogram };
  for (const span of spans) {
    const lag = trainVersion - span.version;
    checkIntRange(`token lag (v${span.version} trained from v${trainVersion})`, lag, 0, Number.MAX_SAFE_INTEGER);
    if (span.tokens > 0) next[lag] = (next[lag] ?? 0) + span.tokens;
  }
  return next;
}

export function mergeLagHistograms(a: LagHistogram, b: LagHistogram): LagHistogram {
  const next = { ...a };
  for (const [lag, tokens] of Object.entries(b)) next[lag] = (next[lag] ?? 0) + tokens;
  return next;
}

export interface LagSummary {
  /** Trained generated tokens counted. */
  tokens: number;
  mean: number;
  p99: number;
  max: number;
}

export function lagSummary(histogram: LagHistogram): LagSummary {
  const entries = Object.entries(histogram)
    .map(([lag, tokens]) => ({ lag: Number(lag), tokens }))
    .filter((entry) => entry.tokens > 0)
    .sort((a, b) => a.lag - b.lag);
  const tokens = entries.reduce((sum, entry) => sum + entry.tokens, 0);
  if (tokens === 0) return { tokens: 0, mean: 0, p99: 0, max: 0 };
  const mean = entries.reduce((sum, entry) => sum + entry.lag * entry.tokens, 0) / tokens;
  // Nearest-rank percentile: the smallest lag with at least 99 % of the tokens at or below it.
  const rank = Math.ceil(0.99 * tokens);
  let seen = 0;
  let p99 = entries.at(-1)!.lag;
  for (const entry of entries) {
    seen += entry.tokens;
    if (seen >= rank) {
      p99 = entry.lag;
      break;
    }
  }
  return { tokens, mean, p99, max: entries.at(-1)!.lag };
}

/** Counts of a discrete value (e.g. turns per trajectory): value → count. */
export type CountHistogram = Record<string, number>;

export function addCount(histogram: CountHistogram, value: number, count = 1): CountHistogram {
  checkIntRange('histogram value', value, 0, Number.MAX_SAFE_INTEGER);
  return { ...histogram, [value]: (histogram[value] ?? 0) + count };
}

/**
 * Two-sample Kolmogorov–Smirnov distance: the largest gap between the empirical CDFs of two
 * discrete samples given as counts. 0 when either is empty (nothing to compare).
 */
export function ksDistance(a: CountHistogram, b: CountHistogram): number {
  const total = (h: CountHistogram): number => Object.values(h).reduce((sum, n) => sum + n, 0);
  const na = total(a);
  const nb = total(b);
  if (na === 0 || nb === 0) return 0;
  const values = [...new Set([...Object.keys(a), ...Object.keys(b)].map(Number))].sort((x, y) => x - y);
  let ca = 0;
  let cb = 0;
  let distance = 0;
  for (const value of values) {
    ca += a[value] ?? 0;
    cb += b[value] ?? 0;
    distance = Math.max(distance, Math.abs(ca / na - cb / nb));
  }
  checkPostcondition('KS distance in [0, 1]', distance >= 0 && distance <= 1 + 1e-12, () => String(distance));
  return Math.min(1, distance);
}

/** The run's staleness figures for status: trained ÷ (trained + dropped) samples and the lag of trained tokens. */
export function runStalenessFigures(
  policy: StalenessPolicy,
  counters: { batched: number; dropped: Record<string, number> },
  tokenLags: LagHistogram,
): { policy: StalenessPolicy; utilization: number; tokenLag: LagSummary } {
  const dropped = Object.values(counters.dropped).reduce((sum, n) => sum + n, 0);
  const decided = counters.batched + dropped;
  return { policy, utilization: decided === 0 ? 1 : counters.batched / decided, tokenLag: lagSummary(tokenLags) };
}

export interface UtilizationInput {
  /** Samples trained, and samples discarded (dropped for any reason). */
  trained: number;
  discarded: number;
  /** Generated tokens of the trained samples, and all tokens decoded for trained or discarded samples (regenerated ones included). */
  trainedTokens: number;
  decodedTokens: number;
}

export interface Utilization {
  /** trained ÷ (trained + discarded): of the admitted samples whose fate is decided, the share trained. */
  trajectories: number;
  /** trained samples' generated tokens ÷ tokens decoded for decided samples. */
  tokens: number;
}

/**
 * Sample utilization over the samples whose fate is decided: those still live when the measurement
 * is taken are neither trained nor lost yet, and are left out of both sides.
 */
export function sampleUtilization(input: UtilizationInput): Utilization {
  for (const [name, value] of Object.entries(input)) checkIntRange(`utilization: ${name}`, value, 0, Number.MAX_SAFE_INTEGER);
  checkPostcondition('utilization: trained tokens ≤ decoded tokens', input.trainedTokens <= input.decodedTokens, () => JSON.stringify(input));
  const decided = input.trained + input.discarded;
  return {
    trajectories: decided === 0 ? 1 : input.trained / decided,
    tokens: input.decodedTokens === 0 ? 1 : input.trainedTokens / input.decodedTokens,
  };
}
