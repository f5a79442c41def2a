/**
 * `timeshare timeline`: the per-rank Gantt chart of a run, from its Temporal history (or of a
 * timelines.json file, e.g. what `timeshare bench` writes), as SVG + PNG + the timeline JSON.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { ValidationError } from '../gpu/validation';
import { fetchIterationHistories, timelineFromIterationHistories, type IterationHistory } from '../timeline/fromHistory';
import { renderTimelinesSvg, svgToPng } from '../timeline/render';
import { parseTimelines } from '../timeline/schema';
import type { Timeline } from '../timeline/types';
import type { TemporalTarget } from '../workers/options';
import { CliError, connectClient } from './client';

export const DEFAULT_TIMELINE_DIR = path.join('.timeshare', 'timelines');

interface TimelineFlags {
  address?: string;
  namespace?: string;
  out: string;
  iterations?: { from: number; to?: number };
  fromJson?: string;
  title?: string;
}

/** "3" → iteration 3 only; "2..5" → 2 to 5; "2.." → 2 to the last one started. */
export function parseIterationRange(text: string): { from: number; to?: number } {
  const match = /^(\d+)(?:\.\.(\d+)?)?$/.exec(text.trim());
  if (match === null) throw new InvalidArgumentError(`expected K, K..L or K.. with iteration numbers (got '${text}')`);
  const from = Number(match[1]);
  const dots = text.includes('..');
  const to = match[2] === undefined ? (dots ? undefined : from) : Number(match[2]);
  if (to !== undefined && to < from) throw new InvalidArgumentError(`the range ends before it starts (got '${text}')`);
  return to === undefined ? { from } : { from, to };
}

export interface ChartFiles {
  svg: string;
  png: string;
  json?: string;
}

/** Renders `timelines` and writes `<dir>/<name>.svg|.png` (and `.json` with `withJson`). */
export async function writeTimelineCharts(
  timelines: Timeline[],
  dir: string,
  name: string,
  options: { title?: string; withJson?: boolean } = {},
): Promise<ChartFiles> {
  const svg = await renderTimelinesSvg(timelines, options.title === undefined ? {} : { title: options.title });
  const png = await svgToPng(svg);
  mkdirSync(dir, { recursive: true });
  const files: ChartFiles = { svg: path.join(dir, `${name}.svg`), png: path.join(dir, `${name}.png`) };
  writeFileSync(files.svg, svg);
  writeFileSync(files.png, png);
  if (options.withJson === true) {
    files.json = path.join(dir, `${name}.json`);
    writeFileSync(files.json, `${JSON.stringify(timelines, null, 2)}\n`);
  }
  return files;
}

function readTimelinesFile(file: string): Timeline[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read timelines file ${file}: ${(error as Error).message}`, 2);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CliError(`timelines file ${file} is not valid JSON: ${(error as Error).message}`, 2);
  }
  try {
    return parseTimelines(value, file);
  } catch (error) {
    throw new CliError((error as Error).message, 2);
  }
}

export function addTimelineCommand(
  program: Command,
  connection: { withFlags(command: Command): Command; target(flags: { address?: string; namespace?: string }): TemporalTarget },
): void {
  connection
    .withFlags(
      program
        .command('timeline')
        .description(
          "Per-rank Gantt chart of a run's GPU roles over time (rollout, offload, train, sync, onload, idle) from its Temporal history, as SVG + PNG + JSON; " +
            'or of a timelines.json file (--from-json, e.g. written by the simulator)',
        )
        .argument('[run-id]', 'the run to chart (its workflows timeshare-<run-id> and timeshare-<run-id>-iter-<k>)')
        .option('--out <dir>', 'folder for the chart files', DEFAULT_TIMELINE_DIR)
        .option('--iterations <range>', "iterations to chart: K, K..L or K.. (default: all)", parseIterationRange)
        .option('--from-json <file>', 'render a timelines JSON file (an array of timelines) instead of a run')
        .option('--title <text>', 'chart title'),
    )
    .action(async (runId: string | undefined, flags: TimelineFlags) => {
      if ((runId === undefined) === (flags.fromJson === undefined)) {
        throw new CliError('give either a run id or --from-json <file> (exactly one)', 2);
      }
      let files: ChartFiles;
      if (flags.fromJson !== undefined) {
        const timelines = readTimelinesFile(flags.fromJson);
        files = await writeTimelineCharts(timelines, flags.out, path.basename(flags.fromJson, path.extname(flags.fromJson)), { title: flags.title });
      } else {
        const id = runId as string;
        const client = await connectClient(connection.target(flags));
        try {
          let histories: IterationHistory[];
          try {
            histories = await fetchIterationHistories(client, id, flags.iterations ?? {});
          } catch (error) {
            // A run or iteration that does not exist is a usage error, said plainly.
            if (error instanceof ValidationError) throw new CliError(error.message);
            throw error;
          }
          const timeline = timelineFromIterationHistories(histories);
          files = await writeTimelineCharts([timeline], flags.out, `${id}-timeline`, { title: flags.title, withJson: true });
        } finally {
          await client.connection.close();
        }
      }
      console.log(`svg:  ${files.svg}\npng:  ${files.png}${files.json === undefined ? '' : `\njson: ${files.json}`}`);
    });
}
