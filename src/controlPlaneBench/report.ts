/**
 * Summaries and tables of benchmark points: medians per point, growth along each swept axis, and
 * the targets checked against the figures.
 */
import { RUN_HISTORY_BYTES_BUDGET } from '../contract/historyBudget';
import { DEFAULT_ITERATIONS_PER_RUN_EXECUTION } from '../contract/spec';
import type { PointResult } from './runPoint';

/**
 * Temporal's defaults for suggesting continue-as-new (dynamic config
 * limit.historyCount.suggestContinueAsNew / limit.historySize.suggestContinueAsNew).
 */
export const SUGGEST_CONTINUE_AS_NEW_EVENTS = 4 * 1024;
export const SUGGEST_CONTINUE_AS_NEW_BYTES = 4 * 1024 * 1024;
/** Temporal warns at this many events in one workflow history. */
export const HISTORY_EVENTS_WARN = 10_240;

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface PointSummary {
  ranks: number;
  batch: number;
  iterations: number;
  /** Iterations that needed a retry (errors). */
  retries: number;
  /** Workflow tasks timed out or failed, summed over the iterations. */
  workflowTaskTimeouts: number;
  wallMs: number;
  rolloutMs: number;
  batchSeenLagMs: number;
  batchToTrainMs: number;
  batchToTrainMaxMs: number;
  trainToRolloutMs: number;
  trainToRolloutMaxMs: number;
  /** Critical-path orchestration per iteration: the two transitions (engine time in them is 0). */
  orchestrationMs: number;
  eventsPerIteration: number;
  bytesPerIteration: number;
  runEventsPerIteration: number;
  runBytesPerIteration: number;
  workerCpuMsPerIteration: number;
  serverCpuMsPerIteration: number;
  workerPeakRssMiB: number;
  /** In-process workers only: the event loop's delay, median and p99 (ms). */
  eventLoopDelayMs?: { p50: number; p99: number };
}

export function summarize(result: PointResult): PointSummary {
  const its = result.iterations;
  const t1 = its.map((it) => it.batchToTrainMs);
  const t2 = its.flatMap((it) => (it.trainToRolloutMs === undefined ? [] : [it.trainToRolloutMs]));
  const n = its.length;
  return {
    ranks: result.point.ranks,
    batch: result.point.batch,
    iterations: n,
    retries: result.retried.length,
    workflowTaskTimeouts: its.reduce((sum, it) => sum + it.workflowTaskTimeouts, 0),
    wallMs: median(its.map((it) => it.wallMs)),
    rolloutMs: median(its.map((it) => it.rolloutMs)),
    batchSeenLagMs: median(its.map((it) => it.batchSeenLagMs)),
    batchToTrainMs: median(t1),
    batchToTrainMaxMs: Math.max(...t1),
    trainToRolloutMs: median(t2),
    trainToRolloutMaxMs: t2.length === 0 ? Number.NaN : Math.max(...t2),
    orchestrationMs: median(t1) + median(t2),
    eventsPerIteration: median(its.map((it) => it.events)),
    bytesPerIteration: median(its.map((it) => it.bytes)),
    runEventsPerIteration: result.runHistory.events / result.runHistory.iterations,
    runBytesPerIteration: result.runHistory.bytes / result.runHistory.iterations,
    workerCpuMsPerIteration: result.workerCpuMs / result.point.iterations,
    serverCpuMsPerIteration: result.serverCpuMs / result.point.iterations,
    workerPeakRssMiB: result.workerPeakRssBytes / 2 ** 20,
    ...(result.eventLoopDelayMs === undefined ? {} : { eventLoopDelayMs: result.eventLoopDelayMs }),
  };
}

const COLUMNS: [string, (s: PointSummary) => string][] = [
  ['ranks', (s) => String(s.ranks)],
  ['batch', (s) => String(s.batch)],
  ['retries', (s) => String(s.retries)],
  ['WFT t/o', (s) => String(s.workflowTaskTimeouts)],
  ['iter ms', (s) => ms(s.wallMs)],
  ['to batch ms', (s) => ms(s.rolloutMs)],
  ['seen lag', (s) => ms(s.batchSeenLagMs)],
  ['batch→train med/max', (s) => `${ms(s.batchToTrainMs)}/${ms(s.batchToTrainMaxMs)}`],
  ['train→rolling med/max', (s) => `${ms(s.trainToRolloutMs)}/${ms(s.trainToRolloutMaxMs)}`],
  ['orch ms', (s) => ms(s.orchestrationMs)],
  ['events/it', (s) => String(Math.round(s.eventsPerIteration))],
  ['KiB/it', (s) => kib(s.bytesPerIteration)],
  ['run ev/it', (s) => s.runEventsPerIteration.toFixed(1)],
  ['run KiB/it', (s) => kib(s.runBytesPerIteration)],
  ['worker CPU ms/it', (s) => ms(s.workerCpuMsPerIteration)],
  ['server CPU ms/it', (s) => ms(s.serverCpuMsPerIteration)],
  ['worker RSS MiB', (s) => s.workerPeakRssMiB.toFixed(0)],
  ['loop delay p50/p99 ms', (s) => (s.eventLoopDelayMs === undefined ? '—' : `${s.eventLoopDelayMs.p50.toFixed(1)}/${s.eventLoopDelayMs.p99.toFixed(1)}`)],
];

function ms(value: number): string {
  return Number.isNaN(value) ? '-' : value.toFixed(0);
}

function kib(bytes: number): string {
  return (bytes / 1024).toFixed(1);
}

/** A markdown table (reads as plain text on a terminal too). */
export function table(summaries: readonly PointSummary[]): string {
  const header = `| ${COLUMNS.map(([name]) => name).join(' | ')} |`;
  const rule = `|${COLUMNS.map(() => '---').join('|')}|`;
  const rows = summaries.map((s) => `| ${COLUMNS.map(([, cell]) => cell(s)).join(' | ')} |`);
  return [header, rule, ...rows].join('\n');
}

/** How each figure grows along one axis: the ratio of the last point's value to the first's. */
export function growth(summaries: readonly PointSummary[], axis: 'ranks' | 'batch'): string {
  if (summaries.length < 2) return '';
  const first = summaries[0]!;
  const last = summaries[summaries.length - 1]!;
  const factor = last[axis] / first[axis];
  const ratio = (pick: (s: PointSummary) => number): string => (pick(last) / pick(first)).toFixed(2);
  return (
    `${axis} ×${factor} (${first[axis]} → ${last[axis]}): events/it ×${ratio((s) => s.eventsPerIteration)}, ` +
    `KiB/it ×${ratio((s) => s.bytesPerIteration)}, run KiB/it ×${ratio((s) => s.runBytesPerIteration)}, ` +
    `orch ms ×${ratio((s) => s.orchestrationMs)}, worker CPU/it ×${ratio((s) => s.workerCpuMsPerIteration)}`
  );
}

export interface TargetCheck {
  target: string;
  met: boolean;
  detail: string;
}

export function checkTargets(summaries: readonly PointSummary[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const retried = summaries.filter((s) => s.retries > 0);
  checks.push({
    target: 'no iteration fails',
    met: retried.length === 0,
    detail: retried.length === 0 ? 'every iteration completed at its first attempt' : retried.map((s) => `${s.retries} retried at ${s.ranks} ranks, batch ${s.batch}`).join('; '),
  });
  const worst = (pick: (s: PointSummary) => number) => summaries.reduce((a, b) => (pick(b) > pick(a) ? b : a));
  const at = (s: PointSummary) => `${s.ranks} ranks, batch ${s.batch}`;

  const byRanks = new Map<number, PointSummary[]>();
  for (const s of summaries) byRanks.set(s.ranks, [...(byRanks.get(s.ranks) ?? []), s]);
  for (const [ranks, points] of byRanks) {
    if (points.length < 2) continue;
    const sorted = [...points].sort((a, b) => a.batch - b.batch);
    const lo = sorted[0]!;
    const hi = sorted[sorted.length - 1]!;
    const ratio = hi.eventsPerIteration / lo.eventsPerIteration;
    checks.push({
      target: `events per iteration do not grow with batch size (${ranks} ranks)`,
      met: ratio < 1.25,
      detail: `batch ${lo.batch} → ${hi.batch}: ${lo.eventsPerIteration} → ${hi.eventsPerIteration} events (×${ratio.toFixed(2)})`,
    });
  }
  const big = summaries.find((s) => s.ranks === 256 && s.batch === 2048);
  if (big !== undefined) {
    checks.push({
      target: 'history bytes per iteration < 1 MiB at 256 ranks, batch 2048',
      met: big.bytesPerIteration < 2 ** 20,
      detail: `${(big.bytesPerIteration / 1024).toFixed(0)} KiB`,
    });
  }
  const t1 = worst((s) => s.batchToTrainMs);
  checks.push({ target: 'median batch ready → train started < 100 ms', met: t1.batchToTrainMs < 100, detail: `worst point ${at(t1)}: ${t1.batchToTrainMs.toFixed(0)} ms` });
  const t2 = worst((s) => s.trainToRolloutMs);
  checks.push({
    target: 'median train done → all ranks rolling < 100 ms',
    met: t2.trainToRolloutMs < 100,
    detail: `worst point ${at(t2)}: ${t2.trainToRolloutMs.toFixed(0)} ms`,
  });
  const runEvents = worst((s) => s.runEventsPerIteration);
  const runBytes = worst((s) => s.runBytesPerIteration);
  // A run execution ends after DEFAULT_ITERATIONS_PER_RUN_EXECUTION iterations, or at the first
  // iteration boundary past RUN_HISTORY_BYTES_BUDGET: its largest history is the smaller bound.
  const perExecution = DEFAULT_ITERATIONS_PER_RUN_EXECUTION;
  const largestEvents = runEvents.runEventsPerIteration * perExecution;
  const largestBytes = Math.min(runBytes.runBytesPerIteration * perExecution, RUN_HISTORY_BYTES_BUDGET + runBytes.runBytesPerIteration);
  checks.push({
    target: `run history below the continue-as-new suggestion (${perExecution} iterations or ${RUN_HISTORY_BYTES_BUDGET / 2 ** 20} MiB per execution)`,
    met: largestEvents < SUGGEST_CONTINUE_AS_NEW_EVENTS && largestBytes < SUGGEST_CONTINUE_AS_NEW_BYTES,
    detail:
      `largest execution: ${largestEvents.toFixed(0)} events (${at(runEvents)}; suggestion ${SUGGEST_CONTINUE_AS_NEW_EVENTS}), ` +
      `${(largestBytes / 2 ** 20).toFixed(2)} MiB (${at(runBytes)}; suggestion 4 MiB)`,
  });
  const events = worst((s) => s.eventsPerIteration);
  checks.push({
    target: `iteration history below Temporal's ${HISTORY_EVENTS_WARN}-event warning`,
    met: events.eventsPerIteration < HISTORY_EVENTS_WARN,
    detail: `largest ${events.eventsPerIteration} events (${at(events)})`,
  });
  return checks;
}
