/**
 * `timeshare bench`: the three strategies of a preset (or config) through the discrete-event
 * simulator, side by side with the seed's reported figures; optionally the policy comparison
 * against the ROLL-like baseline and the robustness sweep. Writes bench.json and timelines.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadWorkloadCsv } from '../engines/simulated/workload';
import { PIPELINE_POLICY, ROLL_BASELINE_POLICY, type SchedulingPolicy, type StalenessPolicy, type Strategy } from '../gpu';
import { minimumTrainGpus } from '../engines/simulated/roofline';
import { asStrategy, presetPath, readRawConfig, resizePool, withTrainGpus, WORKLOAD_SHAPE_NOTES, WORKLOAD_SHAPES, type WorkloadShape } from '../simulator/presets';
import type { StalenessReport, StrategyReport } from '../simulator/report';
import { checkTimelines } from '../timeline/schema';
import type { Timeline } from '../timeline/types';
import { BenchPool, runBenchJobs, type BenchJob, type BenchJobResult } from './benchJobs';
import { bestCandidate, searchBestCandidate, type SplitSearchMode } from '../simulator/splitSearch';
import { CliError } from './errors';
import { writeTimelineCharts } from './timeline';

/** The seed's reported figures (brief: Qwen3-235B-A22B, SWE workload, 160 GPUs). */
export const SEED_FIGURES = {
  multiplexedVsDisaggregatedThroughput: 3.5,
  timeouts: 'none (multiplexed) vs many (disaggregated)',
  syncOverheadOfTraining: '< 1 %',
  shrinkOffloadSeconds: '2-3 s',
} as const;

const STRATEGY_ORDER: readonly Strategy[] = ['disaggregated', 'multiplexed', 'colocated'];

/**
 * The policies measured against the ROLL-like baseline (re-issue the turn, drop the stale): each
 * change alone, then combinations; (d) is the staleness policy 'resume' (src/gpu/staleness.ts).
 */
export const POLICY_VARIANTS: readonly { name: string; policy: SchedulingPolicy; staleness: StalenessPolicy }[] = [
  { name: 'ROLL-like baseline', policy: ROLL_BASELINE_POLICY, staleness: 'drop' },
  { name: '(a) keep prefix', policy: { ...ROLL_BASELINE_POLICY, migration: 'keep-prefix' }, staleness: 'drop' },
  { name: '(b) least-work release', policy: { ...ROLL_BASELINE_POLICY, release: 'least-work' }, staleness: 'drop' },
  { name: '(c) adaptive trigger', policy: { ...ROLL_BASELINE_POLICY, trigger: 'adaptive' }, staleness: 'drop' },
  { name: '(a)+(b)', policy: { migration: 'keep-prefix', release: 'least-work', trigger: 'batch-ready' }, staleness: 'drop' },
  { name: '(d) resume across versions', policy: ROLL_BASELINE_POLICY, staleness: 'resume' },
  { name: '(a)+(d) pipeline default', policy: PIPELINE_POLICY, staleness: 'resume' },
];

export interface BenchFlags {
  preset: string;
  config?: string;
  iterations: number;
  out?: string;
  comparePolicies: boolean;
  sweep: boolean;
  sweepIterations: number;
  timelineIterations: number;
  workloadCsv?: string;
  /** Iterations per candidate in the search for the best feasible static split (0: no search). */
  splitIterations: number;
  /** Simulate every feasible static split instead of the bounded (golden-section) search. */
  exhaustiveSplitSearch: boolean;
  /** Simulations run side by side on this many worker threads. */
  threads: number;
}

export interface LoadedBase {
  name: string;
  file: string;
  raw: Record<string, unknown>;
}

export function loadBase(flags: Pick<BenchFlags, 'preset' | 'config'>): LoadedBase {
  if (flags.config !== undefined) {
    const file = path.resolve(flags.config);
    const raw = readRawConfig(file);
    if (raw.strategy !== 'multiplexed') {
      throw new CliError(
        `${file}: bench needs a multiplexed config (strategy: ${JSON.stringify(raw.strategy)}): it derives the disaggregated and colocated variants from its pool and train group`,
        2,
      );
    }
    return { name: path.basename(file).replace(/\.(ya?ml|json)$/, ''), file, raw };
  }
  let file: string;
  try {
    file = presetPath(flags.preset);
  } catch (error) {
    throw new CliError((error as Error).message, 2);
  }
  return { name: flags.preset, file, raw: readRawConfig(file) };
}

export async function runBench(flags: BenchFlags): Promise<void> {
  const started = Date.now();
  const cpuStart = process.cpuUsage();
  const cpuSeconds = (): number => {
    const used = process.cpuUsage(cpuStart);
    return (used.user + used.system) / 1e6;
  };
  const base = loadBase(flags);
  const outDir = path.resolve(flags.out ?? path.join('.timeshare', 'bench', base.name));
  const csv = flags.workloadCsv === undefined ? undefined : path.resolve(flags.workloadCsv);

  // Read before any simulation starts: a bad CSV is refused at once, in plain words.
  const csvTable = csv === undefined ? undefined : loadWorkloadCsv(csv);

  // ---- the three strategies and the static split candidates, side by side on the worker threads
  const strategyJobs: BenchJob[] = STRATEGY_ORDER.map((strategy) => ({
    file: base.file,
    raw: base.raw,
    strategy,
    iterations: flags.iterations,
    timelineIterations: Math.min(flags.timelineIterations, flags.iterations),
    ...(csv === undefined ? {} : { csv }),
    full: true,
  }));
  const split = flags.splitIterations > 0 ? staticSplitJobs(base, flags.splitIterations, csv === undefined ? {} : { csv }) : undefined;
  const pool = new BenchPool(flags.threads);
  let results: BenchJobResult[];
  let splitSearch: { search: SplitSearch; wallSeconds: number } | undefined;
  try {
    // The strategies first (the longest jobs); the split search's probes queue behind them and
    // take whichever thread frees first.
    const strategyRuns = Promise.all(strategyJobs.map((job) => pool.run(job)));
    const search = split === undefined ? undefined : searchStaticSplits(split, pool, flags.exhaustiveSplitSearch ? 'exhaustive' : 'bounded');
    [results, splitSearch] = await Promise.all([strategyRuns, search]);
  } finally {
    await pool.close();
  }
  const bestSplit = splitSearch?.search;
  const reports: StrategyReport[] = [];
  const timelines: Timeline[] = [];
  const iterationRecords: Record<string, unknown> = {};
  const wallByStrategy: Record<string, number> = {};
  STRATEGY_ORDER.forEach((strategy, i) => {
    const result = results[i]!;
    wallByStrategy[strategy] = result.wallSeconds;
    reports.push(result.report);
    timelines.push(result.timeline!);
    iterationRecords[strategy] = result.iterations;
  });
  const simSeconds = (Date.now() - started) / 1000;
  const simCpuSeconds = cpuSeconds();
  console.log(`timeshare bench: ${base.name} (${base.file}), ${flags.iterations} iterations per strategy, policy: the pipeline's (${describePolicy(PIPELINE_POLICY)}), staleness: ${asStrategy(base.raw, 'multiplexed', base.file).config.rollout.staleness.policy}`);
  if (csvTable !== undefined) {
    console.log(`workload: turns per trajectory drawn from ${csv}; columns used: ${csvTable.usedColumns.join(', ')}; not used: ${csvTable.ignoredColumns.join(', ') || 'none'}`);
  }
  console.log('');
  console.log(strategyTable(reports));
  console.log('');
  const splitJobs = bestSplit === undefined ? '' : ` and ${bestSplit.candidates.length} static splits × ${flags.splitIterations} iterations`;
  console.log(
    `simulated ${flags.iterations} iterations × 3 strategies${splitJobs} in ${simSeconds.toFixed(1)} s wall, ${simCpuSeconds.toFixed(1)} s CPU, ` +
      `${pool.threadsUsed} threads (each simulation's own wall time: ` +
      STRATEGY_ORDER.map((s) => `${s} ${wallByStrategy[s]!.toFixed(1)} s`).join(', ') +
      (splitSearch === undefined ? '' : `, splits ${splitSearch.wallSeconds.toFixed(1)} s`) +
      '; wall time includes waiting for a shared CPU)',
  );

  // ---- the best feasible static split
  if (bestSplit !== undefined) {
    const mux = reports.find((r) => r.strategy === 'multiplexed')!;
    console.log('');
    console.log(splitTable(bestSplit, mux, flags.splitIterations));
  }

  // ---- policies
  let policies: PolicyRow[] | undefined;
  if (flags.comparePolicies) {
    const t0 = Date.now();
    policies = await comparePolicies(base, flags.iterations, csv, flags.threads);
    console.log('');
    console.log(policyTable(policies, `${base.name} multiplexed, ${flags.iterations} iterations`));
    console.log(`(policy comparison: ${((Date.now() - t0) / 1000).toFixed(1)} s wall)`);
  }

  // ---- sweep
  let sweep: SweepRow[] | undefined;
  if (flags.sweep) {
    const t0 = Date.now();
    sweep = await runSweep(base, flags.sweepIterations, flags.threads);
    console.log('');
    console.log(sweepTable(sweep, flags.sweepIterations));
    console.log(`(sweep: ${((Date.now() - t0) / 1000).toFixed(1)} s wall)`);
  }

  fs.mkdirSync(outDir, { recursive: true });
  const benchFile = path.join(outDir, 'bench.json');
  const timelinesFile = path.join(outDir, 'timelines.json');
  const bench = {
    preset: base.name,
    config: base.file,
    iterations: flags.iterations,
    workloadCsv: csv,
    seed: SEED_FIGURES,
    strategies: reports,
    idealBoundFraction: Object.fromEntries(reports.map((r) => [r.strategy, r.idealBoundFraction])),
    bestStaticSplit: bestSplit,
    iterationRecords,
    policies,
    sweep,
    wallSeconds: (Date.now() - started) / 1000,
    simulationWallSeconds: simSeconds,
    simulationCpuSeconds: simCpuSeconds,
    wallSecondsByStrategy: wallByStrategy,
    splitSearchSimulationWallSeconds: splitSearch?.wallSeconds,
  };
  fs.writeFileSync(benchFile, `${JSON.stringify(bench, null, 1)}\n`);
  fs.writeFileSync(timelinesFile, `${JSON.stringify(timelines)}\n`);
  console.log('');
  console.log(`wrote ${benchFile}`);
  console.log(`wrote ${timelinesFile} (${timelines.length} timelines, first ${Math.min(flags.timelineIterations, flags.iterations)} iterations each)`);
  if (flags.timelineIterations > 0) {
    const charts = await writeTimelineCharts(checkTimelines(timelines, 'simulated timelines'), outDir, 'timelines', {
      title: `${base.name}: the three strategies, first ${Math.min(flags.timelineIterations, flags.iterations)} iterations (simulated)`,
    });
    console.log(`wrote ${charts.svg} and ${charts.png}`);
  }
  console.log(`bench wall time ${((Date.now() - started) / 1000).toFixed(1)} s (CPU ${cpuSeconds().toFixed(1)} s)`);
}

function describePolicy(policy: SchedulingPolicy): string {
  return `${policy.migration}, ${policy.release} release, ${policy.trigger} trigger`;
}

const pct = (x: number): string => `${(x * 100).toFixed(x < 0.01 && x > 0 ? 2 : 1)} %`;
const num = (x: number, digits = 2): string => x.toFixed(digits);

function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function strategyTable(reports: readonly StrategyReport[]): string {
  const by = (strategy: string): StrategyReport => {
    const report = reports.find((r) => r.strategy === strategy);
    if (report === undefined) throw new Error(`bench: no report for ${strategy}`);
    return report;
  };
  const cols = STRATEGY_ORDER.map(by);
  const mux = by('multiplexed');
  const dis = by('disaggregated');
  const row = (name: string, f: (r: StrategyReport) => string, seed = ''): string[] => [name, ...cols.map(f), seed];
  const rows = [
    row('rollout throughput (trajectories/s)', (r) => num(r.trajectoriesPerSecond, 3)),
    row('rollout throughput (tokens/s)', (r) => num(r.generatedTokensPerSecond, 0)),
    row(
      'multiplexed / disaggregated throughput',
      (r) => (r.strategy === 'multiplexed' ? `${num(mux.generatedTokensPerSecond / dis.generatedTokensPerSecond)}× tok, ${num(mux.trajectoriesPerSecond / dis.trajectoriesPerSecond)}× traj` : ''),
      `${SEED_FIGURES.multiplexedVsDisaggregatedThroughput}×`,
    ),
    row('iteration time (mean, s)', (r) => num(r.meanIterationSeconds, 1)),
    row('GPU busy: rollout', (r) => pct(r.gpuTimeByRole.rollout)),
    row('GPU busy: train', (r) => pct(r.gpuTimeByRole.train)),
    row('GPU offload + onload', (r) => pct(r.gpuTimeByRole.offload + r.gpuTimeByRole.onload)),
    row('GPU weight sync', (r) => pct(r.gpuTimeByRole.sync)),
    row('GPU idle (bubble)', (r) => pct(r.idleFraction)),
    row('timeout rate', (r) => `${pct(r.timeoutRate)} (${r.timeouts})`, SEED_FIGURES.timeouts),
    row('stale drops (lag > async ratio)', (r) => String(r.staleDrops)),
    row('sample utilization (trajectories / tokens)', (r) => `${pct(r.staleness.utilization.trajectories)} / ${pct(r.staleness.utilization.tokens)}`),
    row('trained token lag (mean / p99 / max)', (r) => `${num(r.staleness.tokenLag.mean)} / ${r.staleness.tokenLag.p99} / ${r.staleness.tokenLag.max}`),
    row('long-tail bias (KS turns, trained vs decided)', (r) => num(r.staleness.turnsKs, 3)),
    row('admitted trajectories lost (timeout + stale)', (r) => pct(r.lostRate)),
    row('admitted trajectories cut by maxTurns / maxTokens', (r) => `${r.cutByTurnLimit} / ${r.cutByTokenLimit} of ${r.admitted}`),
    row('KV capacity per rank (tokens)', (r) => (Number.isFinite(r.kvCapacityTokensPerRank) ? String(r.kvCapacityTokensPerRank) : 'unlimited')),
    row('generate calls queued (KV room or slot)', (r) => pct(r.queuedCallShare)),
    row('prefilled tokens per decoded token', (r) => num(r.prefillPerDecodedToken, 1)),
    row('rollout occupancy weighted by work (vs its batch unpaused)', (r) => pct(r.rolloutWorkOccupancy)),
    row('GPU time needed: decode at rank peak / train', (r) => `${pct(r.rolloutWorkShare)} / ${pct(r.trainWorkShare)}`),
    row('fraction of the ideal bound', (r) => pct(r.idealBoundFraction)),
    row('shrink overhead (share of run)', (r) => pct(r.shrinkShare), `offload ${SEED_FIGURES.shrinkOffloadSeconds}`),
    row('sync + expand (share of run)', (r) => pct(r.syncShare)),
    row('weight sync / training time', (r) => pct(r.syncShareOfTraining), SEED_FIGURES.syncOverheadOfTraining),
  ];
  return renderTable(['', ...cols.map((r) => `${r.strategy} (${r.gpus} GPUs)`), 'seed'], rows);
}

interface PolicyRow {
  name: string;
  policy: SchedulingPolicy;
  staleness: StalenessPolicy;
  report: StrategyReport;
  /** Trained trajectories/s relative to the baseline, minus 1. */
  gainOverBaseline: number;
}

function policyJobs(base: LoadedBase, iterations: number, csv: string | undefined, shape?: WorkloadShape): BenchJob[] {
  return POLICY_VARIANTS.map(({ policy, staleness }) => ({
    file: base.file,
    raw: base.raw,
    strategy: 'multiplexed' as const,
    iterations,
    policy,
    staleness,
    ...(shape !== undefined ? { shape } : csv === undefined ? {} : { csv }),
  }));
}

function policyRows(results: readonly BenchJobResult[]): PolicyRow[] {
  const rows = POLICY_VARIANTS.map(({ name, policy, staleness }, i) => ({ name, policy, staleness, report: results[i]!.report }));
  const baseline = rows[0]!.report.trajectoriesPerSecond;
  return rows.map((row) => ({ ...row, gainOverBaseline: row.report.trajectoriesPerSecond / baseline - 1 }));
}

async function comparePolicies(base: LoadedBase, iterations: number, csv: string | undefined, threads: number): Promise<PolicyRow[]> {
  return policyRows(await runBenchJobs(policyJobs(base, iterations, csv), threads));
}

function policyTable(rows: readonly PolicyRow[], title: string): string {
  const signed = (x: number): string => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`;
  return (
    `policies (${title}):\n` +
    renderTable(
      ['policy', 'trajectories/s', 'vs baseline', 'iteration s', 'tokens/s', 'discarded tokens', 'migrated/iter', ...STALENESS_COLUMNS],
      rows.map((row) => [
        row.name,
        num(row.report.trajectoriesPerSecond, 3),
        signed(row.gainOverBaseline),
        num(row.report.meanIterationSeconds, 1),
        num(row.report.generatedTokensPerSecond, 0),
        pct(row.report.discardedTokenShare),
        num(row.report.migratedPerIteration, 0),
        ...stalenessCells(row.report.staleness),
      ]),
    )
  );
}

const STALENESS_COLUMNS = ['util traj', 'util tok', 'lag mean', 'lag p99', 'lag max', 'KS turns'];

function stalenessCells(report: StalenessReport): string[] {
  return [
    pct(report.utilization.trajectories),
    pct(report.utilization.tokens),
    num(report.tokenLag.mean),
    String(report.tokenLag.p99),
    String(report.tokenLag.max),
    num(report.turnsKs, 3),
  ];
}

interface SweepRow {
  shape: WorkloadShape;
  gpus: number;
  strategies: Record<string, { trajectoriesPerSecond: number; tokensPerSecond: number; timeoutRate: number; idleFraction: number }>;
  policies: { name: string; trajectoriesPerSecond: number; gainOverBaseline: number; staleness: StalenessReport }[];
}

/** The pool sizes of the sweep: the preset's and half of it. */
function sweepPools(base: LoadedBase): number[] {
  const parsed = asStrategy(base.raw, 'multiplexed', base.file);
  const nodes = parsed.layout.nodes;
  return [nodes, Math.max(2, Math.round(nodes / 2))];
}

async function runSweep(base: LoadedBase, iterations: number, threads: number): Promise<SweepRow[]> {
  const points = sweepPools(base).flatMap((nodes) => {
    const resized: LoadedBase = { ...base, raw: resizePool(base.raw, nodes, base.file) };
    return WORKLOAD_SHAPES.map((shape) => ({ resized, shape }));
  });
  const jobsPerPoint = STRATEGY_ORDER.length + POLICY_VARIANTS.length;
  const jobs = points.flatMap(({ resized, shape }): BenchJob[] => [
    ...STRATEGY_ORDER.map((strategy) => ({ file: base.file, raw: resized.raw, strategy, iterations, shape })),
    ...policyJobs(resized, iterations, undefined, shape),
  ]);
  const results = await runBenchJobs(jobs, threads);
  return points.map(({ resized, shape }, point) => {
    const own = results.slice(point * jobsPerPoint, (point + 1) * jobsPerPoint);
    const strategies: SweepRow['strategies'] = {};
    STRATEGY_ORDER.forEach((strategy, i) => {
      const report = own[i]!.report;
      strategies[strategy] = {
        trajectoriesPerSecond: report.trajectoriesPerSecond,
        tokensPerSecond: report.generatedTokensPerSecond,
        timeoutRate: report.timeoutRate,
        idleFraction: report.idleFraction,
      };
    });
    const parsed = asStrategy(resized.raw, 'colocated', base.file);
    const policies = policyRows(own.slice(STRATEGY_ORDER.length)).map((row) => ({
      name: row.name,
      trajectoriesPerSecond: row.report.trajectoriesPerSecond,
      gainOverBaseline: row.gainOverBaseline,
      staleness: row.report.staleness,
    }));
    return { shape, gpus: parsed.layout.nodes * parsed.layout.gpusPerNode, strategies, policies };
  });
}

function sweepStaleness(report: StalenessReport): string {
  return `${pct(report.utilization.trajectories)} / ${num(report.tokenLag.mean)}·${report.tokenLag.p99}·${report.tokenLag.max} / ${num(report.turnsKs, 3)}`;
}

function sweepTable(rows: readonly SweepRow[], iterations: number): string {
  const signed = (x: number): string => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`;
  const policyNames = rows[0]?.policies.slice(1).map((p) => p.name) ?? [];
  const header = [
    'workload',
    'GPUs',
    'mux/disagg tok/s',
    'mux/coloc traj/s',
    'timeouts disagg / mux',
    ...policyNames.map((n) => `${n} vs ROLL`),
    'ROLL util / KS',
    'default util / lag mean·p99·max / KS',
  ];
  const body = rows.map((row) => {
    const s = row.strategies;
    return [
      row.shape,
      String(row.gpus),
      `${num(s.multiplexed!.tokensPerSecond / s.disaggregated!.tokensPerSecond)}×`,
      `${num(s.multiplexed!.trajectoriesPerSecond / s.colocated!.trajectoriesPerSecond)}×`,
      `${pct(s.disaggregated!.timeoutRate)} / ${pct(s.multiplexed!.timeoutRate)}`,
      ...row.policies.slice(1).map((p) => signed(p.gainOverBaseline)),
      `${pct(row.policies[0]!.staleness.utilization.trajectories)} / ${num(row.policies[0]!.staleness.turnsKs, 3)}`,
      sweepStaleness(row.policies.at(-1)!.staleness),
    ];
  });
  const notes = WORKLOAD_SHAPES.map((shape) => `  ${shape}: ${WORKLOAD_SHAPE_NOTES[shape]}`).join('\n');
  return `robustness sweep (${iterations} iterations per run; policies on multiplexed, trajectories/s vs the ROLL-like baseline):\n${renderTable(header, body)}\n${notes}`;
}

export interface SplitCandidate {
  trainGpus: number;
  trajectoriesPerSecond: number;
  tokensPerSecond: number;
  timeoutRate: number;
}

export interface SplitSearch {
  /** The smallest train group training memory allows (GPUs), before rounding up to the split's step (whole nodes, or whole ranks on a one-node pool). */
  minimumTrainGpus: number;
  iterations: number;
  /** bounded: a golden-section search that assumes trajectories/s unimodal in the train-group size (src/simulator/splitSearch.ts); exhaustive: every feasible size. */
  search: SplitSearchMode;
  /** Every feasible train-group size (GPUs), simulated or not. */
  feasibleTrainGpus: number[];
  /** The simulated candidates, by train-group size. */
  candidates: SplitCandidate[];
  best: SplitCandidate;
}

export interface SplitJobs {
  minimumTrainGpus: number;
  iterations: number;
  trainGpus: number[];
  jobs: BenchJob[];
}

/**
 * Every static split the pool allows, as disaggregated runs of `iterations` iterations: train
 * groups of whole nodes, from the smallest training memory allows to all nodes but one; on a
 * one-node pool, train groups of whole ranks within the node instead (the rest roll out).
 */
export function staticSplitJobs(base: LoadedBase, iterations: number, workload: { csv?: string; shape?: WorkloadShape } = {}): SplitJobs {
  const parsed = asStrategy(base.raw, 'multiplexed', base.file);
  const { nodes, gpusPerNode } = parsed.layout;
  const hardware = parsed.config.simulation.hardware;
  const minimum = hardware === undefined ? 1 : minimumTrainGpus(hardware, parsed.config.maxTokens);
  const trainGpus = splitTrainGroupSizes(minimum, nodes, gpusPerNode, parsed.config.rollout.gpusPerRank);
  const jobs = trainGpus.map((gpus): BenchJob => ({ file: base.file, raw: withTrainGpus(base.raw, gpus), strategy: 'disaggregated', iterations, ...workload }));
  return { minimumTrainGpus: minimum, iterations, trainGpus, jobs };
}

/** The train-group sizes (GPUs) a static split may take: whole nodes, or whole ranks of the one node. */
export function splitTrainGroupSizes(minimum: number, nodes: number, gpusPerNode: number, gpusPerRank: number): number[] {
  const step = nodes > 1 ? gpusPerNode : gpusPerRank;
  const largest = nodes > 1 ? (nodes - 1) * gpusPerNode : gpusPerNode - gpusPerRank;
  const smallest = Math.max(1, Math.ceil(minimum / step)) * step;
  if (smallest > largest) {
    const room = nodes > 1 ? `${nodes} nodes of ${gpusPerNode} GPUs (a split keeps at least one node for rollout)` : `one node of ${gpusPerNode} GPUs in ranks of ${gpusPerRank} (a split keeps at least one rank for rollout)`;
    throw new CliError(`no feasible static split: training needs ${minimum} GPUs, the pool has ${room}; --split-iterations 0 skips the search`, 2);
  }
  const sizes: number[] = [];
  for (let gpus = smallest; gpus <= largest; gpus += step) sizes.push(gpus);
  return sizes;
}

/** The best feasible static split by trained trajectories/s, each candidate simulated on the pool. */
export async function searchStaticSplits(split: SplitJobs, pool: BenchPool, mode: SplitSearchMode): Promise<{ search: SplitSearch; wallSeconds: number }> {
  const evaluations = await searchBestCandidate(
    split.jobs.length,
    mode,
    (index) => pool.run(split.jobs[index]!),
    (result) => result.report.trajectoriesPerSecond,
  );
  const candidateOf = (index: number): SplitCandidate => {
    const report = evaluations.get(index)!.report;
    return { trainGpus: split.trainGpus[index]!, trajectoriesPerSecond: report.trajectoriesPerSecond, tokensPerSecond: report.generatedTokensPerSecond, timeoutRate: report.timeoutRate };
  };
  const best = bestCandidate(evaluations, (result) => result.report.trajectoriesPerSecond);
  const candidates = [...evaluations.keys()].map(candidateOf);
  const search: SplitSearch = {
    minimumTrainGpus: split.minimumTrainGpus,
    iterations: split.iterations,
    search: mode,
    feasibleTrainGpus: split.trainGpus,
    candidates,
    best: candidates.find((c) => c.trainGpus === split.trainGpus[best])!,
  };
  return { search, wallSeconds: [...evaluations.values()].reduce((sum, r) => sum + r.wallSeconds, 0) };
}

function splitTable(search: SplitSearch, mux: StrategyReport, iterations: number): string {
  const header = ['train GPUs', 'rollout GPUs', 'trajectories/s', 'tokens/s', 'timeout rate'];
  const rows = search.candidates.map((c) => [
    `${c.trainGpus}${c === search.best ? ' (best)' : ''}`,
    String(mux.gpus - c.trainGpus),
    num(c.trajectoriesPerSecond, 3),
    num(c.tokensPerSecond, 0),
    pct(c.timeoutRate),
  ]);
  const searched =
    search.search === 'exhaustive'
      ? `all ${search.feasibleTrainGpus.length} feasible train-group sizes simulated`
      : `bounded search: ${search.candidates.length} of the ${search.feasibleTrainGpus.length} feasible train-group sizes simulated, golden-section, assuming trajectories/s unimodal in the train-group size; --exhaustive-split-search simulates all`;
  return (
    `static splits (disaggregated, ${iterations} iterations each; training memory needs at least ${search.minimumTrainGpus} GPUs; ${searched}):\n` +
    renderTable(header, rows) +
    `\nmultiplexed / best feasible static split (${search.best.trainGpus} + ${mux.gpus - search.best.trainGpus}): ` +
    `${num(mux.trajectoriesPerSecond / search.best.trajectoriesPerSecond)}× trajectories/s, ${num(mux.generatedTokensPerSecond / search.best.tokensPerSecond)}× tokens/s ` +
    `(multiplexed over ${mux.iterations} iterations)`
  );
}
