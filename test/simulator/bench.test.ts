/** `timeshare bench` as a user runs it: the real bin/timeshare in a child process. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TIMELINE_ROLES, type Timeline } from '../../src/timeline/types';
import { runCli } from '../helpers/processes';

const run = (args: string[]) => runCli(args);

describe('timeshare bench', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-bench-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the three strategies beside the seed figures and writes bench.json, timelines.json and their charts', async () => {
    const out = path.join(dir, 'seed');
    const result = await run(['bench', '--preset', 'seed-160', '--iterations', '2', '--split-iterations', '1', '--timeline-iterations', '1', '--out', out]);
    expect(result.code, result.stderr).toBe(0);
    for (const text of [
      'disaggregated (160 GPUs)',
      'multiplexed (160 GPUs)',
      'colocated (160 GPUs)',
      'seed',
      '3.5×',
      '< 1 %',
      'timeout rate',
      'GPU idle (bubble)',
      'CPU',
      'fraction of the ideal bound',
      'cut by maxTurns / maxTokens',
      'KV capacity per rank',
      'multiplexed / best feasible static split',
    ]) {
      expect(result.stdout).toContain(text);
    }
    const bench = JSON.parse(readFileSync(path.join(out, 'bench.json'), 'utf8')) as {
      strategies: { strategy: string; iterations: number; trajectoriesPerSecond: number; idealBoundFraction: number }[];
      idealBoundFraction: Record<string, number>;
      bestStaticSplit: { minimumTrainGpus: number; best: { trainGpus: number }; candidates: { trainGpus: number }[] };
    };
    expect(bench.strategies.map((s) => s.strategy)).toEqual(['disaggregated', 'multiplexed', 'colocated']);
    for (const report of bench.strategies) {
      expect(report.iterations).toBe(2);
      expect(report.trajectoriesPerSecond).toBeGreaterThan(0);
      expect(report.idealBoundFraction).toBeGreaterThan(0);
      expect(report.idealBoundFraction).toBeLessThanOrEqual(1);
      expect(bench.idealBoundFraction[report.strategy]).toBe(report.idealBoundFraction);
    }
    // Static splits from the smallest train group training memory allows, in whole nodes.
    const split = bench.bestStaticSplit;
    expect(split.candidates[0]!.trainGpus).toBeGreaterThanOrEqual(split.minimumTrainGpus);
    expect(split.candidates[0]!.trainGpus - split.minimumTrainGpus).toBeLessThan(8);
    expect(split.candidates.map((c) => c.trainGpus)).toContain(split.best.trainGpus);
    const timelines = JSON.parse(readFileSync(path.join(out, 'timelines.json'), 'utf8')) as Timeline[];
    expect(timelines).toHaveLength(3);
    for (const timeline of timelines) {
      expect(timeline.source).toBe('simulator');
      expect(timeline.lanes.length).toBeGreaterThanOrEqual(20);
      expect(timeline.endMs).toBeGreaterThan(0);
      for (const segment of timeline.segments) {
        expect(timeline.lanes).toContain(segment.lane);
        expect(TIMELINE_ROLES).toContain(segment.role);
        expect(segment.endMs).toBeLessThanOrEqual(timeline.endMs);
      }
    }
    // The charts of those timelines: one panel per strategy.
    const svg = readFileSync(path.join(out, 'timelines.svg'), 'utf8');
    for (const strategy of ['disaggregated', 'multiplexed', 'colocated']) expect(svg).toContain(`${strategy} (160 GPUs)`);
    const png = readFileSync(path.join(out, 'timelines.png'));
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
  }, 400_000);

  it('gives the same figures whether its simulations run side by side on worker threads or one after another', async () => {
    const figures = async (threads: string, ...extra: string[]): Promise<Record<string, unknown>> => {
      const out = path.join(dir, `threads-${threads}${extra.join('')}`);
      const result = await run(['bench', '--preset', 'seed-160', '--iterations', '1', '--split-iterations', '1', '--timeline-iterations', '0', '--threads', threads, '--out', out, ...extra]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(`${threads === '1' ? 1 : 2} threads`);
      const bench = JSON.parse(readFileSync(path.join(out, 'bench.json'), 'utf8')) as Record<string, unknown>;
      for (const timing of ['wallSeconds', 'simulationWallSeconds', 'simulationCpuSeconds', 'wallSecondsByStrategy', 'splitSearchSimulationWallSeconds']) {
        expect(bench).toHaveProperty(timing);
        delete bench[timing];
      }
      return bench;
    };
    type Split = { search: string; feasibleTrainGpus: number[]; candidates: { trainGpus: number }[]; best: unknown };
    const serial = await figures('1');
    const bounded = serial.bestStaticSplit as Split;
    expect(bounded.search).toBe('bounded');
    expect(bounded.candidates.length).toBeGreaterThan(1);
    expect(bounded.candidates.length).toBeLessThan(bounded.feasibleTrainGpus.length);
    expect(await figures('2')).toEqual(serial);

    // Every feasible split simulated: the same best, the bounded search's candidates among them.
    const all = await figures('2', '--exhaustive-split-search');
    const exhaustive = all.bestStaticSplit as Split;
    expect(exhaustive.search).toBe('exhaustive');
    expect(exhaustive.candidates.map((c) => c.trainGpus)).toEqual(bounded.feasibleTrainGpus);
    expect(exhaustive.best).toEqual(bounded.best);
    for (const candidate of bounded.candidates) expect(exhaustive.candidates).toContainEqual(candidate);
    expect({ ...all, bestStaticSplit: undefined }).toEqual({ ...serial, bestStaticSplit: undefined });
  }, 400_000);

  it('draws turn counts from a CSV; refuses a CSV without a turns column and an unknown preset', async () => {
    const csv = path.join(dir, 'turns.csv');
    writeFileSync(csv, `task,turns\n${Array.from({ length: 50 }, (_, i) => `t${i},${5 + (i % 20)}`).join('\n')}\n`);
    const ok = await run(['bench', '--iterations', '1', '--split-iterations', '0', '--timeline-iterations', '0', '--workload-csv', csv, '--out', path.join(dir, 'csv')]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`turns per trajectory drawn from ${csv}; columns used: turns; not used: task`);

    const bad = path.join(dir, 'bad.csv');
    writeFileSync(bad, 'task,steps\na,3\n');
    const refused = await run(['bench', '--iterations', '1', '--split-iterations', '0', '--workload-csv', bad, '--out', path.join(dir, 'bad')]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('no "turns" column');

    const notMultiplexed = await run(['bench', '--config', path.join(__dirname, '..', '..', 'examples', 'disaggregated.yaml')]);
    expect(notMultiplexed.code).toBe(2);
    expect(notMultiplexed.stderr).toContain('bench needs a multiplexed config');

    const unknown = await run(['bench', '--preset', 'nope']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown bench preset 'nope'");
  }, 400_000);
});
