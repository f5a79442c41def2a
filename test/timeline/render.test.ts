/**
 * Timeline charts: the SVG shows the lanes, roles and titles; the PNG is a real PNG of the SVG's
 * size (2×); bad timelines are refused with an error naming the timeline and segment; the
 * `timeshare timeline --from-json` command renders a timelines file.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/validation/patterns';
import { renderTimelinesSvg, svgToPng } from '../../src/timeline/render';
import { TimelineFormatError } from '../../src/timeline/schema';
import type { Timeline, TimelineRole, TimelineSegment } from '../../src/timeline/types';
import { runCli } from '../helpers/processes';

/** A strategy-like pattern: the first half of the lanes train after rolling out, the rest keep rolling out. */
function sampleTimeline(strategy: string, laneCount: number): Timeline {
  const lanes = Array.from({ length: laneCount }, (_, index) => `GPU ${index}`);
  const segments: TimelineSegment[] = [];
  lanes.forEach((lane, index) => {
    const released = index < laneCount / 2;
    const add = (role: TimelineRole, startMs: number, endMs: number) => segments.push({ lane, role, startMs, endMs, label: 'iter 0' });
    add('rollout', 0, released ? 4_000 : 6_000 + index);
    if (released) {
      add('offload', 4_000, 4_500);
      add('train', 4_500, 8_000);
      add('onload', 8_200, 8_700);
    }
    add('sync', 8_700, 9_200);
  });
  return { title: `${strategy} (${laneCount} GPUs)`, source: 'simulator', strategy, lanes, segments, endMs: 10_000, marks: [{ atMs: 0, label: 'iter 0' }] };
}

/** Width and height from the PNG's IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

function svgSize(svg: string): { width: number; height: number } {
  const match = /<svg[^>]* width="(\d+(?:\.\d+)?)" height="(\d+(?:\.\d+)?)"/.exec(svg);
  if (match === null) throw new Error(`no width/height on the svg element: ${svg.slice(0, 200)}`);
  return { width: Number(match[1]), height: Number(match[2]) };
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

describe('timeline charts', () => {
  it('draws one panel per timeline with every lane, a legend of every role, titles and a time axis in seconds', async () => {
    const timelines = ['colocated', 'disaggregated', 'multiplexed'].map((strategy) => sampleTimeline(strategy, 4));
    const svg = await renderTimelinesSvg(timelines, { title: 'three strategies, 4 GPUs' });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('three strategies, 4 GPUs');
    for (const timeline of timelines) expect(svg).toContain(`>${timeline.title}<`);
    for (const lane of ['GPU 0', 'GPU 1', 'GPU 2', 'GPU 3']) expect(svg.split(`>${lane}<`).length - 1).toBe(3);
    for (const role of ['rollout', 'train', 'offload', 'onload', 'sync', 'idle']) expect(svg).toContain(`>${role}<`);
    expect(svg.split('>time (s)<').length - 1).toBe(3);
    // The x axis is in seconds: 10 000 ms is labelled 10.
    expect(svg).toContain('>10<');
    // One bar per segment plus an idle background per lane (vega writes a path per bar).
    const bars = timelines.reduce((sum, timeline) => sum + timeline.segments.length + timeline.lanes.length, 0);
    expect(svg.split('role: ').length - 1).toBe(bars);
  });

  it('stays legible at 160 lanes: thin lanes, every 10th labelled', async () => {
    const svg = await renderTimelinesSvg([sampleTimeline('multiplexed', 160)]);
    for (const labelled of ['GPU 0', 'GPU 10', 'GPU 150']) expect(svg).toContain(`>${labelled}<`);
    for (const unlabelled of ['GPU 1', 'GPU 155', 'GPU 159']) expect(svg).not.toContain(`>${unlabelled}<`);
    expect(svg).toContain('160 lanes (every 10th labelled)');
    const { height } = svgSize(svg);
    expect(height).toBeGreaterThan(400);
    expect(height).toBeLessThan(1_000);
  });

  it('rasterises to a PNG twice the size of the SVG', async () => {
    const svg = await renderTimelinesSvg([sampleTimeline('multiplexed', 4)]);
    const png = await svgToPng(svg);
    expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    const size = svgSize(svg);
    expect(pngSize(png)).toEqual({ width: Math.round(size.width * 2), height: Math.round(size.height * 2) });
    // A blank or text-less image compresses to a few KiB; a chart with labels does not.
    expect(png.length).toBeGreaterThan(20_000);
  });

  it('refuses invalid timelines with an error naming the timeline, segment and rule', async () => {
    const good = sampleTimeline('multiplexed', 4);
    const broken = (change: (timeline: Timeline) => void): Timeline => {
      const copy = structuredClone(good);
      change(copy);
      return copy;
    };
    const cases: [Timeline, RegExp, typeof ValidationError | typeof TimelineFormatError][] = [
      [broken((t) => ((t.segments[2] as TimelineSegment).endMs = 10_001)), /timelines to render\[1\] 'multiplexed \(4 GPUs\)': segment 2 \(train on 'GPU 0'\) lies within \[0, endMs\].*"endMs":10001/, ValidationError],
      [broken((t) => ((t.segments[0] as TimelineSegment).startMs = 5_000)), /segment 0 \(rollout on 'GPU 0'\) starts no later than it ends/, ValidationError],
      [broken((t) => ((t.segments[1] as TimelineSegment).lane = 'GPU 9')), /segment lanes.*\["GPU 9"\]/, ValidationError],
      [broken((t) => t.lanes.push('GPU 0')), /lanes.*duplicates.*\["GPU 0"\].*\[VAL_NO_DUPLICATES\]/, ValidationError],
      [broken((t) => ((t.segments[0] as TimelineSegment).role = 'lunch' as TimelineRole)), /1\.segments\.0\.role: Invalid option/, TimelineFormatError],
      [broken((t) => ((t.segments[0] as TimelineSegment).startMs = -1)), /1\.segments\.0\.startMs: Too small/, TimelineFormatError],
      [broken((t) => (t.marks = [{ atMs: 20_000, label: 'late' }])), /mark 0 \('late'\) lies within \[0, endMs\]/, ValidationError],
    ];
    for (const [timeline, message, type] of cases) {
      const attempt = renderTimelinesSvg([good, timeline]);
      await expect(attempt).rejects.toBeInstanceOf(type);
      await expect(attempt).rejects.toThrow(message);
    }
    await expect(renderTimelinesSvg([])).rejects.toThrow(/expected at least one timeline/);
  });

  describe('timeshare timeline --from-json', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-timeline-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const cli = (args: string[]) => runCli(args, { timeoutMs: 60_000 });

    it('renders a timelines file to SVG and PNG and prints their paths; refuses a bad file with exit 2', async () => {
      const input = path.join(dir, 'timelines.json');
      writeFileSync(input, JSON.stringify(['colocated', 'multiplexed'].map((strategy) => sampleTimeline(strategy, 8))));
      const out = path.join(dir, 'charts');
      const ok = await cli(['timeline', '--from-json', input, '--out', out, '--title', 'from a file']);
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
      expect(ok.stdout).toContain(path.join(out, 'timelines.svg'));
      expect(ok.stdout).toContain(path.join(out, 'timelines.png'));
      expect(readFileSync(path.join(out, 'timelines.svg'), 'utf8')).toContain('from a file');
      expect(readFileSync(path.join(out, 'timelines.png')).subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);

      const bad = path.join(dir, 'bad.json');
      writeFileSync(bad, JSON.stringify([{ ...sampleTimeline('colocated', 2), endMs: 100 }]));
      const refused = await cli(['timeline', '--from-json', bad, '--out', path.join(dir, 'bad-out')]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('lies within [0, endMs]');
      expect(existsSync(path.join(dir, 'bad-out'))).toBe(false);

      const neither = await cli(['timeline']);
      expect(neither.code).toBe(2);
      expect(neither.stderr).toContain('either run ids or --from-json');
    });
  });
});
