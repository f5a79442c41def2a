/**
 * The `timeshare bench` command line; the bench itself (src/cli/simulatorBench.ts: the simulator, presets,
 * charts) loads only when it runs.
 */
import { availableParallelism } from 'node:os';
import { Option, type Command } from 'commander';
import { decimal } from './args';
import type { BenchFlags } from './simulatorBench';

export function addBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('Simulate the three strategies of a preset in virtual time (discrete-event simulator) and compare them with the seed experiment')
    .option('--preset <name>', 'bench preset (examples/<name>.yaml)', 'seed-160')
    .option('--config <file>', 'a multiplexed run config to bench instead of the preset')
    .option('--iterations <n>', 'iterations per strategy', decimal('--iterations', 1), 100)
    .option('--out <dir>', 'output directory (default .timeshare/bench/<preset>)')
    .option('--compare-policies', 'also measure the scheduling policies against the ROLL-like baseline', false)
    .option('--sweep', 'also run the robustness sweep (its own workload shapes × pool sizes; --workload-csv does not apply to it)', false)
    .option('--sweep-iterations <n>', 'iterations per run in the sweep', decimal('--sweep-iterations', 1), 30)
    .option('--timeline-iterations <n>', 'iterations recorded in timelines.json', decimal('--timeline-iterations', 0), 3)
    .option('--split-iterations <n>', 'iterations per train-group size in the search for the best feasible static split (0: skip the search)', decimal('--split-iterations', 0), 10)
    .option('--exhaustive-split-search', 'simulate every feasible static split instead of the bounded golden-section search (which assumes trajectories/s unimodal in the train-group size)', false)
    .option('--workload-csv <file>', 'draw turns per trajectory from this CSV (a "turns" column), e.g. the SWE-bench Verified statistics')
    .addOption(
      new Option('--threads <n>', 'simulations run side by side on this many worker threads (1: in the main thread)').argParser(decimal('--threads', 1)).default(availableParallelism(), 'the CPUs available'),
    )
    .action(async (flags: BenchFlags) => {
      const { runBench } = await import('./simulatorBench');
      await runBench(flags);
    });
}
