/**
 * `timeshare timeline`: the per-rank Gantt chart of a run, from its Temporal history (or of a
 * timelines.json file, e.g. what `timeshare bench` writes), as SVG + PNG + the timeline JSON.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { InvalidArgumentError, type Command } from 'commander';
import { ValidationError } from '../validation/patterns';
import type { IterationHistory } from '../timeline/fromHistory';
import type { Timeline } from '../timeline/types';
import type { DevServer } from '../temporal/devServer';
import type { ConnectionFlags } from './context';
import { CliError } from './errors';

export const DEFAULT_TIMELINE_DIR = path.join('.timeshare', 'timelines');

interface TimelineFlags extends ConnectionFlags {
  stateDir?: string;
  out: string;
  iterations?: { from: number; to?: number };
  fromJson?: string;
  title?: string;
}

/**
 * Iteration numbers as a person reads them (from 1, as the progress lines): "3" → iteration 3
 * only; "2..5" → 2 to 5; "2.." → 2 to the last one started.
 */
export function parseIterationRange(text: string): { from: number; to?: number } {
  const match = /^([1-9]\d*)(?:\.\.([1-9]\d*)?)?$/.exec(text.trim());
  if (match === null) throw new InvalidArgumentError(`expected K, K..L or K.. with iteration numbers from 1 (got '${text}')`);
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
  // The renderer (vega, resvg) loads only when a chart is drawn: the CLI's other commands start without it.
  const { renderTimelinesSvg, svgToPng } = await import('../timeline/render');
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

/**
 * A finished `timeshare dev` run keeps its history in the state folder's database but no server
 * serves it: start a headless dev server on that database while we read it.
 */
async function serveDevState(stateDir: string): Promise<DevServer> {
  const dbFile = path.resolve(stateDir, 'temporal.db');
  if (!existsSync(dbFile)) throw new CliError(`no 'timeshare dev' state in ${stateDir} (expected ${dbFile})`, 2);
  if (existsSync(path.join(stateDir, 'dev-processes.json'))) {
    const { devServerAddressOf } = await import('./dev');
    const address = devServerAddressOf(stateDir);
    throw new CliError(
      `'timeshare dev' is running on ${stateDir} (or was killed; running it again cleans up): ` +
        `read from its server instead with --address ${address ?? "127.0.0.1:<the dev's --port, default 7233>"}`,
    );
  }
  const { startDevServer } = await import('../temporal/devServer');
  try {
    return await startDevServer({ dbFile, headless: true, logFile: path.resolve(stateDir, 'logs', 'temporal-timeline.log') });
  } catch (error) {
    throw new CliError(`could not start a Temporal dev server on ${dbFile}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

async function readTimelinesFile(file: string): Promise<Timeline[]> {
  const { parseTimelines } = await import('../timeline/schema');
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

/** The 1-based range typed on the command line as the 0-based numbers of the iterations' workflow ids. */
function workflowRange(range: { from: number; to?: number } | undefined): { from?: number; to?: number } {
  if (range === undefined) return {};
  return range.to === undefined ? { from: range.from - 1 } : { from: range.from - 1, to: range.to - 1 };
}

/** One panel per run, read from the server `client` is connected to. */
async function runTimelines(client: Client, runIds: readonly string[], range: { from?: number; to?: number }): Promise<Timeline[]> {
  const { fetchIterationHistories, timelineFromIterationHistories } = await import('../timeline/fromHistory');
  const timelines: Timeline[] = [];
  for (const runId of runIds) {
    let histories: IterationHistory[];
    try {
      histories = await fetchIterationHistories(client, runId, range);
    } catch (error) {
      // A run or iteration that does not exist is a usage error, said plainly.
      if (error instanceof ValidationError) throw new CliError(error.message);
      throw error;
    }
    timelines.push(timelineFromIterationHistories(histories));
  }
  return timelines;
}

/** `withConnectionFlags` adds the Temporal connection flags (src/cli/main.ts). */
export function addTimelineCommand(program: Command, withConnectionFlags: (command: Command) => Command): void {
  withConnectionFlags(
      program
        .command('timeline')
        .description(
          "Per-rank Gantt chart of a run's GPU roles over time (rollout, offload, train, sync, onload, idle) from its Temporal history, as SVG + PNG + JSON; " +
            'several runs give one panel each (e.g. the three strategies); or render a timelines.json file (--from-json, e.g. written by the simulator)',
        )
        .argument('[run-ids...]', 'the run(s) to chart (workflows timeshare-<run-id> and timeshare-<run-id>-iter-<k>)')
        .option('--out <dir>', 'folder for the chart files', DEFAULT_TIMELINE_DIR)
        .option('--iterations <range>', 'iterations to chart, numbered from 1 as in the progress lines: K, K..L or K.. (default: all)', parseIterationRange)
        .option('--state-dir <dir>', "read finished 'timeshare dev' runs from its state folder (starts a headless server on its database meanwhile)")
        .option('--from-json <file>', 'render a timelines JSON file (an array of timelines) instead of runs')
        .option('--title <text>', 'chart title'),
    )
    .action(async (runIds: string[], flags: TimelineFlags) => {
      if ((runIds.length === 0) === (flags.fromJson === undefined)) {
        throw new CliError('give either run ids or --from-json <file> (exactly one of them)', 2);
      }
      let files: ChartFiles;
      if (flags.fromJson !== undefined) {
        const timelines = await readTimelinesFile(flags.fromJson);
        files = await writeTimelineCharts(timelines, flags.out, path.basename(flags.fromJson, path.extname(flags.fromJson)), { title: flags.title });
      } else {
        if (flags.stateDir !== undefined && flags.address !== undefined) throw new CliError('give --state-dir or --address, not both', 2);
        const { connectClient } = await import('./client');
        const { target } = await import('./context');
        const server = flags.stateDir === undefined ? undefined : await serveDevState(flags.stateDir);
        const client = await connectClient(server === undefined ? target(flags) : { address: server.address, namespace: 'default' }).catch(async (error: unknown) => {
          await server?.stop();
          throw error;
        });
        try {
          const timelines = await runTimelines(client, runIds, workflowRange(flags.iterations));
          // File names from run ids: keep them inside --out whatever the ids contain.
          const safe = runIds.map((id) => id.replace(/[^A-Za-z0-9._-]/g, '_'));
          const name = safe.length === 1 ? `${safe[0]}-timeline` : `timeline-${safe.join('-')}`;
          files = await writeTimelineCharts(timelines, flags.out, name, { title: flags.title, withJson: true });
        } finally {
          await client.connection.close();
          await server?.stop();
        }
      }
      console.log(`svg:  ${files.svg}\npng:  ${files.png}${files.json === undefined ? '' : `\njson: ${files.json}`}`);
    });
}
