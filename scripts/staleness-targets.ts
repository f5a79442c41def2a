/**
 * The staleness targets of docs/benchmarks.md ("Staleness"), on the seed preset and the four
 * workload shapes of the sweep: the ROLL-like baseline and the pipeline's default, the two rows of
 * `timeshare bench --compare-policies` the targets compare, and nothing else (the full command
 * also runs five other policies and the strategies: hours on a shared machine).
 *
 *   npx tsx scripts/staleness-targets.ts [--iterations 30] [--nodes 20] [--no-kv-cap]
 *
 * --no-kv-cap: the admission without its KV cap (src/gpu/staleness.ts `kvRunningCap`), for comparison.
 *
 * Per row: trained trajectories/s of both and their ratio, sample utilization, trained-token lag,
 * KS of trained vs decided turn counts, and the mean turns and decoded tokens per trained
 * trajectory (the work a trained trajectory costs: 'drop' trains the shorter ones), and under the
 * default the share of generate calls that queued for KV room or a slot and the tokens prefilled per
 * decoded token (what the KV cap acts on).
 */
import path from 'node:path';
import { POLICY_VARIANTS } from '../src/cli/simulatorBench';
import { simulationConfig } from '../src/simulator/config';
import { asStrategy, presetPath, readRawConfig, resizePool, shapedWorkload, WORKLOAD_SHAPES, type WorkloadShape } from '../src/simulator/presets';
import { strategyReport } from '../src/simulator/report';
import { simulate, type SimulationResult } from '../src/simulator/simulator';
import { integerFlag } from '../src/cli/args';

const flag = (name: string, fallback: number): number => integerFlag(process.argv, name, fallback);

const iterations = flag('--iterations', 30);
const file = presetPath('seed-160');
const preset = readRawConfig(file);
const raw = process.argv.includes('--nodes') ? resizePool(preset, flag('--nodes', 20), file) : preset;
const kvCap = process.argv.includes('--no-kv-cap') ? ('off' as const) : ('known' as const);
const baseline = POLICY_VARIANTS[0]!;
const pipelineDefault = POLICY_VARIANTS.at(-1)!;

function meanTurns(result: SimulationResult): number {
  const entries = Object.entries(result.totals.staleness.trainedTurns);
  const count = entries.reduce((sum, [, n]) => sum + n, 0);
  return count === 0 ? 0 : entries.reduce((sum, [turns, n]) => sum + Number(turns) * n, 0) / count;
}

function run(shape: WorkloadShape | 'preset', variant: (typeof POLICY_VARIANTS)[number]) {
  const parsed = asStrategy(raw, 'multiplexed', file);
  const started = Date.now();
  const result = simulate(
    simulationConfig(parsed, {
      iterations,
      policy: variant.policy,
      staleness: variant.staleness,
      baseDir: path.dirname(file),
      kvCap,
      ...(shape === 'preset' ? {} : { workload: shapedWorkload(parsed, shape) }),
    }),
  );
  const report = strategyReport(result);
  return { report, meanTurns: meanTurns(result), decodedPerTrained: result.totals.staleness.trainedDecodedTokens / Math.max(1, result.totals.trainedSamples), wallSeconds: (Date.now() - started) / 1000 };
}

const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
console.log(`staleness targets: seed-160 multiplexed, ${iterations} iterations per run; ${baseline.name} vs ${pipelineDefault.name}; admission KV cap ${kvCap === 'known' ? 'on' : 'off'}`);
console.log('row | traj/s baseline → default (ratio) | util traj / tok | lag mean/p99/max | KS turns (baseline) | turns per trained traj baseline → default | decoded tokens per trained traj | default: calls queued / prefilled per decoded token | wall s');
for (const shape of ['preset', ...WORKLOAD_SHAPES] as const) {
  const b = run(shape, baseline);
  const d = run(shape, pipelineDefault);
  const s = d.report.staleness;
  console.log(
    [
      shape,
      `${b.report.trajectoriesPerSecond.toFixed(3)} → ${d.report.trajectoriesPerSecond.toFixed(3)} (${(d.report.trajectoriesPerSecond / b.report.trajectoriesPerSecond).toFixed(3)}×)`,
      `${pct(s.utilization.trajectories)} / ${pct(s.utilization.tokens)}`,
      `${s.tokenLag.mean.toFixed(2)}/${s.tokenLag.p99}/${s.tokenLag.max}`,
      `${s.turnsKs.toFixed(3)} (${b.report.staleness.turnsKs.toFixed(3)})`,
      `${b.meanTurns.toFixed(1)} → ${d.meanTurns.toFixed(1)}`,
      `${Math.round(b.decodedPerTrained)} → ${Math.round(d.decodedPerTrained)}`,
      `${pct(d.report.queuedCallShare)} / ${d.report.prefillPerDecodedToken.toFixed(1)}`,
      `${(b.wallSeconds + d.wallSeconds).toFixed(0)}`,
    ].join(' | '),
  );
}
