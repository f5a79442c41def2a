/**
 * Checks the bench's bounded search for the best static split against the exhaustive one on a
 * preset's own workload and the sweep's workload shapes, at both pool sizes of the sweep: both
 * searches run for real (each candidate a disaggregated simulation), and the table shows each
 * one's best split, its trajectories/s, how many candidates it simulated and its CPU time.
 *
 *   npx tsx scripts/check-split-search.ts [--preset seed-160] [--split-iterations 10] [--pool-nodes 20,10]
 *     [--workloads own,swe,heavy-tail,light-tail,bimodal]
 *
 * The exhaustive search is the slow half: a split that leaves one rollout rank can take minutes
 * per iteration (seed-160, light-tail: 182 s for one iteration of 152 + 8).
 *
 * Exits 1 when the bounded search picks another split or other figures than the exhaustive one.
 */
import { BenchPool } from '../src/cli/benchJobs';
import { loadBase, searchStaticSplits, staticSplitJobs, type LoadedBase, type SplitSearch } from '../src/cli/simulatorBench';
import { asStrategy, resizePool, WORKLOAD_SHAPES, type WorkloadShape } from '../src/simulator/presets';

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at >= 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1]! : fallback;
}

async function timed(run: () => Promise<SplitSearch>): Promise<{ search: SplitSearch; cpuSeconds: number }> {
  const start = process.cpuUsage();
  const search = await run();
  const used = process.cpuUsage(start);
  return { search, cpuSeconds: (used.user + used.system) / 1e6 };
}

async function main(): Promise<void> {
  const preset = loadBase({ preset: option('--preset', 'seed-160') });
  const iterations = Number(option('--split-iterations', '10'));
  const presetNodes = asStrategy(preset.raw, 'multiplexed', preset.file).layout.nodes;
  const poolNodes = option('--pool-nodes', `${presetNodes},${Math.max(2, Math.round(presetNodes / 2))}`).split(',').map(Number);
  const workloads = option('--workloads', ['own', ...WORKLOAD_SHAPES].join(','))
    .split(',')
    .map((name): WorkloadShape | undefined => {
      if (name === 'own') return undefined;
      if (!(WORKLOAD_SHAPES as readonly string[]).includes(name)) throw new Error(`--workloads: unknown workload '${name}' (known: own, ${WORKLOAD_SHAPES.join(', ')})`);
      return name as WorkloadShape;
    });
  const pool = new BenchPool(1);
  let misses = 0;
  console.log(`split search check: ${preset.name}, ${iterations} iterations per candidate`);
  console.log('GPUs | workload | feasible | exhaustive best (traj/s) | bounded best (traj/s) | simulated: exhaustive / bounded | CPU s: exhaustive / bounded | same');
  try {
    for (const nodes of poolNodes) {
      const base: LoadedBase = nodes === presetNodes ? preset : { ...preset, raw: resizePool(preset.raw, nodes, preset.file) };
      const gpus = nodes * asStrategy(base.raw, 'multiplexed', base.file).layout.gpusPerNode;
      for (const shape of workloads) {
        const split = staticSplitJobs(base, iterations, shape === undefined ? {} : { shape });
        const exhaustive = await timed(async () => (await searchStaticSplits(split, pool, 'exhaustive')).search);
        const bounded = await timed(async () => (await searchStaticSplits(split, pool, 'bounded')).search);
        const same =
          JSON.stringify(bounded.search.best) === JSON.stringify(exhaustive.search.best) &&
          bounded.search.candidates.every((c) => exhaustive.search.candidates.some((e) => JSON.stringify(e) === JSON.stringify(c)));
        if (!same) misses++;
        const best = (s: SplitSearch): string => `${s.best.trainGpus} + ${gpus - s.best.trainGpus} (${s.best.trajectoriesPerSecond.toFixed(4)})`;
        console.log(
          `${gpus} | ${shape ?? `${preset.name}'s own`} | ${split.trainGpus.length} | ${best(exhaustive.search)} | ${best(bounded.search)} | ` +
            `${exhaustive.search.candidates.length} / ${bounded.search.candidates.length} | ${exhaustive.cpuSeconds.toFixed(1)} / ${bounded.cpuSeconds.toFixed(1)} | ${same ? 'yes' : 'NO'}`,
        );
      }
    }
  } finally {
    await pool.close();
  }
  if (misses > 0) {
    console.error(`the bounded search missed the exhaustive best (or its figures) in ${misses} case(s)`);
    process.exit(1);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
