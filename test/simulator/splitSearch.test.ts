/**
 * The bounded search for the best static split against the exhaustive one: on strictly unimodal
 * scores it finds the same best with fewer evaluations; on the simulator's real static splits
 * (small configs, every workload shape of the sweep) it picks the split the exhaustive search
 * picks, with the same figures.
 */
import { describe, expect, it } from 'vitest';
import { BenchPool, type BenchJobResult } from '../../src/cli/benchJobs';
import { CliError } from '../../src/cli/errors';
import { loadBase, searchStaticSplits, splitTrainGroupSizes, staticSplitJobs, type SplitSearch } from '../../src/cli/simulatorBench';
import { resizePool, WORKLOAD_SHAPES, type WorkloadShape } from '../../src/simulator/presets';
import { bestCandidate, searchBestCandidate, type SplitSearchMode } from '../../src/simulator/splitSearch';

/** A strictly unimodal sequence of `count` scores peaking at `peak`, with uneven steps. */
function unimodal(count: number, peak: number, seed: number): number[] {
  let state = seed;
  const step = (): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return 0.01 + state / 2147483648;
  };
  const scores = new Array<number>(count);
  scores[peak] = 100;
  for (let i = peak - 1; i >= 0; i--) scores[i] = scores[i + 1]! - step();
  for (let i = peak + 1; i < count; i++) scores[i] = scores[i - 1]! - step();
  return scores;
}

async function search(scores: readonly number[], mode: SplitSearchMode): Promise<{ best: number; evaluated: number[]; calls: number }> {
  let calls = 0;
  const evaluations = await searchBestCandidate(
    scores.length,
    mode,
    async (index) => {
      calls++;
      return scores[index]!;
    },
    (score) => score,
  );
  return { best: bestCandidate(evaluations, (score) => score), evaluated: [...evaluations.keys()], calls };
}

describe('split search', () => {
  it('finds the exhaustive best of every strictly unimodal score, each candidate evaluated at most once, fewer in all from 7 candidates', async () => {
    for (let count = 1; count <= 24; count++) {
      for (let peak = 0; peak < count; peak++) {
        const scores = unimodal(count, peak, count * 31 + peak);
        const exhaustive = await search(scores, 'exhaustive');
        const bounded = await search(scores, 'bounded');
        expect(exhaustive.best).toBe(peak);
        expect(exhaustive.evaluated).toEqual(scores.map((_, i) => i));
        expect(bounded.best, `${count} candidates, peak at ${peak}`).toBe(peak);
        expect(bounded.calls).toBe(bounded.evaluated.length);
        expect(bounded.evaluated).toEqual([...bounded.evaluated].sort((a, b) => a - b));
        if (count >= 7) expect(bounded.calls, `${count} candidates, peak at ${peak}`).toBeLessThan(count);
        if (count === 13) expect(bounded.calls).toBeLessThanOrEqual(6);
      }
    }
  });

  it('can miss a second peak: what the bounded search assumes', async () => {
    // Rising to a local peak at 3, a dip, and a higher peak at 11: not unimodal.
    const scores = [1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 9, 2];
    expect((await search(scores, 'exhaustive')).best).toBe(11);
    expect((await search(scores, 'bounded')).best).toBe(3);
  });

  it('refuses an empty candidate list and a score that is not a number, and names the failing evaluation', async () => {
    await expect(searchBestCandidate(0, 'bounded', async () => 1, (x) => x)).rejects.toThrow(/number of candidates/);
    await expect(
      searchBestCandidate(
        5,
        'bounded',
        async (index) => {
          if (index === 3) throw new Error('candidate 3 failed');
          return index;
        },
        (x) => x,
      ),
    ).rejects.toThrow('candidate 3 failed');
    await expect(searchBestCandidate(5, 'bounded', async (index) => (index === 2 ? Number.NaN : index), (x) => x)).rejects.toThrow('candidate 2 scored NaN');
    expect(() => bestCandidate(new Map([[0, 1], [1, Number.NaN]]), (x) => x)).toThrow('candidate 1 scored NaN');
  });
});

describe('bounded vs exhaustive static split search on the simulator', () => {
  const cases: { name: string; nodes?: number; shape?: WorkloadShape }[] = [
    { name: 'dense-8b-h100 (7 candidates), its own workload' },
    ...WORKLOAD_SHAPES.map((shape) => ({ name: `dense-8b-h100, ${shape} workload`, shape })),
    { name: 'dense-8b-h100 on 16 nodes (15 candidates)', nodes: 16 },
  ];
  for (const { name, nodes, shape } of cases) {
    it(`${name}: the same best split with the same figures`, async () => {
      const preset = loadBase({ preset: 'dense-8b-h100' });
      const base = nodes === undefined ? preset : { ...preset, raw: resizePool(preset.raw, nodes, preset.file) };
      const split = staticSplitJobs(base, 1, shape === undefined ? {} : { shape });
      const pool = new BenchPool(1);
      let exhaustive: SplitSearch;
      let bounded: SplitSearch;
      try {
        exhaustive = (await searchStaticSplits(split, pool, 'exhaustive')).search;
        bounded = (await searchStaticSplits(split, pool, 'bounded')).search;
      } finally {
        await pool.close();
      }
      expect(exhaustive.candidates.map((c) => c.trainGpus)).toEqual(split.trainGpus);
      expect(bounded.best).toEqual(exhaustive.best);
      for (const candidate of bounded.candidates) expect(exhaustive.candidates).toContainEqual(candidate);
      expect(bounded.candidates.length).toBeLessThan(exhaustive.candidates.length);
    }, 120_000);
  }
});

describe('the static splits a pool allows', () => {
  it('takes whole nodes on a pool of several, up to all nodes but one', () => {
    expect(splitTrainGroupSizes(1, 4, 8, 1)).toEqual([8, 16, 24]);
    expect(splitTrainGroupSizes(52, 20, 8, 1)).toEqual([56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 136, 144, 152]);
  });

  it('takes whole ranks of the node on a one-node pool, up to all its ranks but one', () => {
    expect(splitTrainGroupSizes(1, 1, 8, 1)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(splitTrainGroupSizes(3, 1, 8, 2)).toEqual([4, 6]);
  });

  it('refuses a pool with no room for a split, naming the skip flag', () => {
    expect(() => splitTrainGroupSizes(8, 1, 8, 1)).toThrow(CliError);
    expect(() => splitTrainGroupSizes(8, 1, 8, 1)).toThrow(/training needs 8 GPUs, the pool has one node of 8 GPUs in ranks of 1 .*--split-iterations 0/);
    expect(() => splitTrainGroupSizes(17, 3, 8, 1)).toThrow(/training needs 17 GPUs, the pool has 3 nodes of 8 GPUs/);
  });

  it("the demo config's one node: a disaggregated run per size, its train group on the first GPUs", () => {
    // --config wins over the preset, as on the command line.
    const split = staticSplitJobs(loadBase({ preset: 'seed-160', config: 'examples/multiplexed.yaml' }), 1);
    expect(split.trainGpus).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(split.jobs.map((job) => job.raw.train)).toEqual(['0-0', '0-1', '0-2', '0-3', '0-4', '0-5', '0-6'].map((gpus) => ({ gpus })));
    expect(split.jobs.every((job) => job.strategy === 'disaggregated')).toBe(true);
  });
});

// The pool runs what it is given in this thread when asked for one thread: the results are the jobs'.
it('BenchPool in one thread runs jobs in the order submitted', async () => {
  const base = loadBase({ preset: 'dense-8b-h100' });
  const split = staticSplitJobs(base, 1);
  const pool = new BenchPool(1);
  const order: number[] = [];
  const runs: Promise<BenchJobResult>[] = split.jobs.slice(0, 3).map((job, i) => pool.run(job).then((r) => (order.push(i), r)));
  await Promise.all(runs);
  await pool.close();
  expect(order).toEqual([0, 1, 2]);
  await expect(pool.run(split.jobs[0]!)).rejects.toThrow('the bench pool is closed');
}, 120_000);

it('BenchPool names a failing job and runs the next one', async () => {
  const base = loadBase({ preset: 'dense-8b-h100' });
  const [good] = staticSplitJobs(base, 1).jobs;
  const pool = new BenchPool(1);
  try {
    const bad = pool.run({ ...good!, raw: { ...good!.raw, batchSize: -1 } });
    const next = pool.run(good!);
    await expect(bad).rejects.toThrow(/^bench job disaggregated of .*dense-8b-h100\.yaml, 1 iterations: .*batchSize/s);
    expect((await next).report.trajectoriesPerSecond).toBeGreaterThan(0);
  } finally {
    await pool.close();
  }
}, 120_000);
