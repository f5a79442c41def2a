/**
 * The simulator's figures, exactly as the recorded reference has them: every field of a run's
 * result (totals, iteration records with their decisions, GPU time by role, rank counters, the
 * first iteration's timeline) and its bench report, for a set of small runs that go through
 * every path of the model (shared and per-request prefill, KV queueing and eviction, environment
 * timeouts, migration policies, staleness drops, the adaptive trigger, broadcast sync, a
 * CSV-like workload, a static split candidate). Speed work on the simulator must leave them
 * unchanged to the last bit.
 *
 * A deliberate change of the model or the policy changes them: re-record with
 * `SIM_GOLDEN_RECORD=1 npx vitest run test/simulator/golden.test.ts` and say why in the commit.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { examplesDir } from '../../src/config';
import { ROLL_BASELINE_POLICY, type Strategy } from '../../src/gpu';
import { simulationConfig, type SimulationOptions } from '../../src/simulator/config';
import { asStrategy, presetPath, readRawConfig, shapedWorkload, withTrainGpus } from '../../src/simulator/presets';
import { strategyReport } from '../../src/simulator/report';
import { simulate } from '../../src/simulator/simulator';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'sim-golden.json');
const RECORD = process.env.SIM_GOLDEN_RECORD === '1';

interface GoldenCase {
  name: string;
  file: string;
  strategy: Strategy;
  raw?: (raw: Record<string, unknown>) => Record<string, unknown>;
  options: SimulationOptions;
  shape?: 'bimodal';
}

const SEED = presetPath('seed-160');
const DENSE = presetPath('dense-8b-h100');
const ASSUMED = path.join(examplesDir(), 'multiplexed.yaml');
const BROADCAST = path.join(examplesDir(), 'reference-rl-broadcast.yaml');
const STRATEGIES: readonly Strategy[] = ['disaggregated', 'multiplexed', 'colocated'];

const CASES: readonly GoldenCase[] = [
  ...STRATEGIES.map((strategy): GoldenCase => ({ name: `seed-160 ${strategy}`, file: SEED, strategy, options: { iterations: 2, timelineIterations: 1 } })),
  { name: 'seed-160 static split 56 + 104', file: SEED, strategy: 'disaggregated', raw: (raw) => withTrainGpus(raw, 56), options: { iterations: 2 } },
  { name: 'seed-160 multiplexed, ROLL-like baseline, drop stale', file: SEED, strategy: 'multiplexed', options: { iterations: 3, policy: ROLL_BASELINE_POLICY, staleness: 'drop' } },
  {
    name: 'seed-160 multiplexed, keep prefix, least-work release, adaptive trigger',
    file: SEED,
    strategy: 'multiplexed',
    options: { iterations: 2, policy: { migration: 'keep-prefix', release: 'least-work', trigger: 'adaptive' } },
  },
  { name: 'seed-160 multiplexed, bimodal workload from rows', file: SEED, strategy: 'multiplexed', options: { iterations: 2 }, shape: 'bimodal' },
  ...STRATEGIES.map((strategy): GoldenCase => ({ name: `dense-8b-h100 ${strategy}`, file: DENSE, strategy, options: { iterations: 2 } })),
  ...STRATEGIES.map((strategy): GoldenCase => ({ name: `assumed rates ${strategy}`, file: ASSUMED, strategy, options: { iterations: 4, timelineIterations: 2 } })),
  { name: 'broadcast sync multiplexed', file: BROADCAST, strategy: 'multiplexed', options: { iterations: 3, timelineIterations: 1 } },
];

function runCase(golden: GoldenCase): unknown {
  const base = readRawConfig(golden.file);
  const parsed = asStrategy(golden.raw?.(base) ?? base, golden.strategy, golden.file);
  const options: SimulationOptions = { ...golden.options, baseDir: path.dirname(golden.file) };
  if (golden.shape !== undefined) options.workload = shapedWorkload(parsed, golden.shape);
  const result = simulate(simulationConfig(parsed, options));
  // Through JSON, as bench.json holds it (Infinity becomes null; every finite number round-trips exactly).
  return JSON.parse(JSON.stringify({ report: strategyReport(result), result }));
}

describe('simulator figures against the recorded reference', () => {
  if (RECORD) {
    it('records the reference', () => {
      const recorded = Object.fromEntries(CASES.map((golden) => [golden.name, runCase(golden)]));
      writeFileSync(FIXTURE, `${JSON.stringify(recorded)}\n`);
    }, 600_000);
    return;
  }
  const reference = existsSync(FIXTURE) ? (JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, unknown>) : {};
  it('has a reference for every case and no other', () => {
    expect(Object.keys(reference).sort()).toEqual(CASES.map((golden) => golden.name).sort());
  });
  for (const golden of CASES) {
    it(golden.name, () => {
      expect(runCase(golden)).toEqual(reference[golden.name]);
    }, 120_000);
  }
});
