/**
 * Timeline charts: one Gantt panel per timeline, stacked vertically on a shared time axis (the
 * seed's figure comparing colocated / disaggregated / multiplexed), drawn with vega-lite and
 * rendered server-side by vega (`toSVG` needs no canvas); PNG through resvg with the bundled
 * DejaVu fonts, so the output does not depend on the fonts a machine has installed.
 */
import path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { parse as parseVega, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { LayerSpec, UnitSpec } from 'vega-lite/build/src/spec';
import type { Field } from 'vega-lite/build/src/channeldef';
import { checkTimelines } from './schema';
import { TIMELINE_ROLES, type Timeline, type TimelineRole } from './types';

/** A colour per role; idle is a light grey so bubbles read as gaps. */
export const ROLE_COLOURS: Readonly<Record<TimelineRole, string>> = {
  rollout: '#4c78a8',
  train: '#f58518',
  offload: '#e45756',
  onload: '#54a24b',
  sync: '#b279a2',
  idle: '#e3e3e3',
};

const FONT_FAMILY = 'DejaVu Sans';
const PLOT_WIDTH = 960;
/** Total lane height a panel aims for; lanes get thinner as they get more numerous. */
const PANEL_TARGET_HEIGHT = 420;
const MAX_LANE_HEIGHT = 26;
const MIN_LANE_HEIGHT = 2;
/** Above this many lanes, only every k-th lane is labelled. */
const MAX_LANE_LABELS = 24;

interface BarRow {
  lane: string;
  role: TimelineRole;
  start: number;
  end: number;
}

function laneHeight(lanes: number): number {
  return Math.max(MIN_LANE_HEIGHT, Math.min(MAX_LANE_HEIGHT, Math.floor(PANEL_TARGET_HEIGHT / lanes)));
}

/** A round step (1, 2, 5 × 10^k) so that at most `max` labels show. */
function labelStep(count: number, max: number): number {
  for (let power = 1; ; power *= 10) {
    for (const base of [1, 2, 5]) if (Math.ceil(count / (base * power)) <= max) return base * power;
  }
}

/** Every k-th lane (k a round number), so a 160-lane axis stays legible. */
function labelledLanes(lanes: readonly string[]): { values: string[]; every: number } {
  const every = labelStep(lanes.length, MAX_LANE_LABELS);
  return { values: lanes.filter((_, index) => index % every === 0), every };
}

function panelSpec(timeline: Timeline, domainEndS: number): LayerSpec<Field> {
  const seconds = (ms: number): number => ms / 1000;
  const segments: BarRow[] = timeline.segments.map((segment) => ({
    lane: segment.lane,
    role: segment.role,
    start: seconds(segment.startMs),
    end: seconds(segment.endMs),
  }));
  // Every lane is idle over the observed span unless a segment says otherwise.
  const background: BarRow[] = timeline.lanes.map((lane) => ({ lane, role: 'idle', start: 0, end: seconds(timeline.endMs) }));
  const { values: laneLabels, every } = labelledLanes(timeline.lanes);
  const height = laneHeight(timeline.lanes.length) * timeline.lanes.length;
  const dense = timeline.lanes.length > 40;
  const where = timeline.source === 'simulator' ? 'simulated, virtual time' : 'Temporal history, wall time';
  const subtitle = [`${timeline.strategy} · ${where} · ${timeline.lanes.length} lanes${every > 1 ? ` (every ${every === 2 ? '2nd' : `${every}th`} labelled)` : ''}`];
  if (timeline.note !== undefined && timeline.note.length > 0) subtitle.push(timeline.note);

  const x = {
    field: 'start',
    type: 'quantitative' as const,
    title: 'time (s)',
    scale: { domain: [0, domainEndS], nice: false, zero: true },
    axis: { grid: true, gridOpacity: 0.35, tickCount: 12 },
  };
  const y = {
    field: 'lane',
    type: 'ordinal' as const,
    title: null,
    sort: timeline.lanes,
    scale: { domain: timeline.lanes, paddingInner: dense ? 0 : 0.18, paddingOuter: dense ? 0 : 0.1 },
    axis: { values: laneLabels, labelFontSize: dense ? 9 : 11, labelPadding: 4, ticks: every > 1, labelLimit: 200 },
  };
  const color = {
    field: 'role',
    type: 'nominal' as const,
    title: 'role',
    scale: { domain: [...TIMELINE_ROLES], range: TIMELINE_ROLES.map((role) => ROLE_COLOURS[role]) },
    legend: { orient: 'top' as const, direction: 'horizontal' as const, symbolType: 'square', symbolSize: 160, labelFontSize: 12, titleFontSize: 12 },
  };
  const layers: (LayerSpec<Field> | UnitSpec<Field>)[] = [
    { data: { values: background }, mark: { type: 'bar' as const }, encoding: { x, x2: { field: 'end' }, y, color } },
    { data: { values: segments }, mark: { type: 'bar' as const }, encoding: { x, x2: { field: 'end' }, y, color } },
  ];
  const marks = timeline.marks ?? [];
  if (marks.length > 0) {
    const markRows = marks.map((mark) => ({ at: seconds(mark.atMs), label: mark.label }));
    const atX = { field: 'at', type: 'quantitative' as const, scale: { domain: [0, domainEndS], nice: false, zero: true } };
    layers.push(
      { data: { values: markRows }, mark: { type: 'rule' as const, color: '#333333', strokeDash: [4, 3], strokeWidth: 1 }, encoding: { x: atX } },
      {
        data: { values: markRows },
        mark: { type: 'text' as const, align: 'left' as const, baseline: 'bottom' as const, dx: 3, dy: -2, fontSize: 10, color: '#333333' },
        encoding: { x: atX, y: { value: 0 }, text: { field: 'label' } },
      },
    );
  }
  return {
    title: { text: timeline.title, subtitle, anchor: 'start' as const, fontSize: 14, subtitleFontSize: 11, subtitleColor: '#555555', offset: 8 },
    width: PLOT_WIDTH,
    height,
    layer: layers,
  };
}

/** The vega-lite spec of the chart (exported for inspection; renderTimelinesSvg draws it). */
export function timelinesChartSpec(timelines: readonly Timeline[], options: { title?: string } = {}): TopLevelSpec {
  const domainEndS = Math.max(...timelines.map((timeline) => timeline.endMs)) / 1000 || 1;
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    ...(options.title === undefined ? {} : { title: { text: options.title, anchor: 'start' as const, fontSize: 17, offset: 14 } }),
    background: 'white',
    padding: 16,
    vconcat: timelines.map((timeline) => panelSpec(timeline, domainEndS)),
    spacing: 28,
    resolve: { scale: { x: 'shared', y: 'independent', color: 'shared' }, legend: { color: 'shared' } },
    config: {
      font: FONT_FAMILY,
      view: { stroke: '#bbbbbb' },
      axis: { labelFont: FONT_FAMILY, titleFont: FONT_FAMILY, labelFontSize: 11, titleFontSize: 12 },
      bar: { cornerRadius: 0 },
    },
  };
  return spec;
}

/**
 * One panel per timeline, stacked vertically on a shared time axis (seconds); lanes on the y
 * axis, a colour per role with a legend, idle drawn explicitly. Validates the timelines first.
 */
export async function renderTimelinesSvg(timelines: Timeline[], options: { title?: string } = {}): Promise<string> {
  const checked = checkTimelines(timelines, 'timelines to render');
  const vegaSpec = compile(timelinesChartSpec(checked, options)).spec;
  const view = new View(parseVega(vegaSpec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

function bundledFontFiles(): string[] {
  const dir = path.join(path.dirname(require.resolve('dejavu-fonts-ttf/package.json')), 'ttf');
  return ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'].map((file) => path.join(dir, file));
}

/** Rasterises an SVG (2× for sharp text) with the bundled fonts only. */
export async function svgToPng(svg: string): Promise<Buffer> {
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: 2 },
    background: 'white',
    font: { fontFiles: bundledFontFiles(), loadSystemFonts: false, defaultFontFamily: FONT_FAMILY, sansSerifFamily: FONT_FAMILY },
  });
  return resvg.render().asPng();
}
