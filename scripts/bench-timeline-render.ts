/**
 * How long the timeline charts take to draw, and how large they are, at 4, 32 and 160 lanes:
 * three panels (one per strategy) of 10 iterations each, every lane rolling out, half of them
 * offloading, training and onloading, all syncing (about 6 segments per lane and iteration).
 *
 *   npx tsx scripts/bench-timeline-render.ts
 */
import { performance } from 'node:perf_hooks';
import { renderTimelinesSvg, svgToPng } from '../src/timeline/render';
import type { Timeline, TimelineSegment } from '../src/timeline/types';

const ITERATIONS = 10;
const ITERATION_MS = 30_000;

function syntheticTimeline(strategy: string, laneCount: number): Timeline {
  const lanes = Array.from({ length: laneCount }, (_, index) => `GPU ${index}`);
  const segments: TimelineSegment[] = [];
  for (let iteration = 0; iteration < ITERATIONS; iteration++) {
    const t0 = iteration * ITERATION_MS;
    const label = `iter ${iteration}`;
    lanes.forEach((lane, index) => {
      const released = index < laneCount / 2;
      // A long tail: kept lanes finish at different times.
      const rolloutEnd = released ? 12_000 : 14_000 + ((index * 7919 + iteration * 104_729) % 12_000);
      segments.push({ lane, role: 'rollout', startMs: t0, endMs: t0 + rolloutEnd, label });
      if (released) {
        segments.push({ lane, role: 'offload', startMs: t0 + 12_000, endMs: t0 + 13_000, label });
        segments.push({ lane, role: 'train', startMs: t0 + 13_000, endMs: t0 + 25_000, label });
        segments.push({ lane, role: 'onload', startMs: t0 + 26_000, endMs: t0 + 27_000, label });
      }
      segments.push({ lane, role: 'sync', startMs: t0 + 27_000, endMs: t0 + 28_000, label });
    });
  }
  return {
    title: `${strategy} (${laneCount} GPUs)`,
    source: 'simulator',
    strategy,
    lanes,
    segments,
    endMs: ITERATIONS * ITERATION_MS,
    marks: Array.from({ length: ITERATIONS }, (_, iteration) => ({ atMs: iteration * ITERATION_MS, label: `iter ${iteration}` })),
  };
}

async function main(): Promise<void> {
  // Warm-up: module loading and vega's first parse are not part of a chart's cost.
  await svgToPng(await renderTimelinesSvg([syntheticTimeline('warm-up', 4)]));
  console.log('lanes per panel | panels | segments | SVG ms | SVG KiB | PNG ms | PNG KiB | PNG pixels');
  for (const lanes of [4, 32, 160]) {
    const timelines = ['colocated', 'disaggregated', 'multiplexed'].map((strategy) => syntheticTimeline(strategy, lanes));
    const segments = timelines.reduce((sum, timeline) => sum + timeline.segments.length, 0);
    let start = performance.now();
    const svg = await renderTimelinesSvg(timelines, { title: `${lanes} lanes` });
    const svgMs = performance.now() - start;
    start = performance.now();
    const png = await svgToPng(svg);
    const pngMs = performance.now() - start;
    const pixels = `${png.readUInt32BE(16)}×${png.readUInt32BE(20)}`;
    console.log(
      [lanes, timelines.length, segments, svgMs.toFixed(0), (svg.length / 1024).toFixed(0), pngMs.toFixed(0), (png.length / 1024).toFixed(0), pixels].join(' | '),
    );
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
