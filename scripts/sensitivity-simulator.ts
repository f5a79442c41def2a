/**
 * Which assumptions move the seed experiment's headline: the seed preset (examples/seed-160.yaml)
 * with one assumption changed at a time, multiplexed against the preset's static split
 * (disaggregated, 128 train + 32 rollout GPUs). Prints the markdown table of docs/benchmarks.md.
 *
 * Usage: npx tsx scripts/sensitivity-simulator.ts [iterations per run, default 10]
 */
import { asStrategy, presetPath, readRawConfig } from '../src/simulator/presets';
import { simulationConfig } from '../src/simulator/config';
import { strategyReport, type StrategyReport } from '../src/simulator/report';
import { simulate } from '../src/simulator/simulator';

type Raw = Record<string, unknown>;
const iterations = Number(process.argv[2] ?? 10);
const file = presetPath('seed-160');
const base = readRawConfig(file);
const simulation = base.simulation as Raw;
const hardware = simulation.hardware as Raw;
const model = hardware.model as Raw;

const withHardware = (patch: Raw, modelPatch: Raw = {}): Raw => ({
  ...base,
  simulation: { ...simulation, hardware: { ...hardware, ...patch, model: { ...model, ...modelPatch } } },
});
const withToolLatency = (factor: number): Raw => ({
  ...base,
  simulation: { ...simulation, workload: { envStepMs: { median: 2000 * factor, p90: 8000 * factor } } },
});

const VARIANTS: { name: string; raw: Raw }[] = [
  { name: 'preset (BF16 weights and KV, async ratio 1, batch 512, 100 turns, tool median 2 s)', raw: base },
  { name: 'KV capacity: FP8 weights (more room for KV)', raw: withHardware({}, { weightBytes: 1 }) },
  { name: 'KV capacity: FP8 weights + FP8 KV cache', raw: withHardware({}, { weightBytes: 1, kvBytes: 1 }) },
  { name: 'KV capacity: memoryFraction 0.85 (less)', raw: withHardware({ memoryFraction: 0.85 }) },
  { name: 'async ratio 0', raw: { ...base, asyncRatio: 0 } },
  { name: 'async ratio 2', raw: { ...base, asyncRatio: 2 } },
  { name: 'batch 256', raw: { ...base, batchSize: 256 } },
  { name: 'batch 1024', raw: { ...base, batchSize: 1024 } },
  { name: 'max turns 50', raw: { ...base, maxTurns: 50 } },
  { name: 'max running requests 64 per rank', raw: withHardware({ maxRunningRequests: 64 }) },
  { name: 'tool latency ×0.25 (median 0.5 s)', raw: withToolLatency(0.25) },
  { name: 'tool latency ×4 (median 8 s)', raw: withToolLatency(4) },
];

function run(raw: Raw, strategy: 'multiplexed' | 'disaggregated'): StrategyReport {
  return strategyReport(simulate(simulationConfig(asStrategy(raw, strategy, file), { iterations })));
}

const started = Date.now();
const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
console.log(`sensitivity of seed-160 (${iterations} iterations per run)\n`);
console.log('| variant | mux traj/s | split traj/s | mux / split traj/s | mux / split tokens/s | timeouts split / mux | mux ideal-bound fraction | mux prefill per decoded token |');
console.log('|---|---|---|---|---|---|---|---|');
for (const { name, raw } of VARIANTS) {
  const mux = run(raw, 'multiplexed');
  const split = run(raw, 'disaggregated');
  console.log(
    `| ${name} | ${mux.trajectoriesPerSecond.toFixed(3)} | ${split.trajectoriesPerSecond.toFixed(3)} | ${(mux.trajectoriesPerSecond / split.trajectoriesPerSecond).toFixed(2)}× | ` +
      `${(mux.generatedTokensPerSecond / split.generatedTokensPerSecond).toFixed(2)}× | ${pct(split.timeoutRate)} / ${pct(mux.timeoutRate)} | ${pct(mux.idealBoundFraction)} | ${mux.prefillPerDecodedToken.toFixed(1)} |`,
  );
}
console.log(`\n(${((Date.now() - started) / 1000).toFixed(0)} s wall)`);
