/**
 * Two checkouts of the code compared on the control-plane bench, in alternating pairs whose order
 * flips from one pair to the next (A B, B A, A B, …): on a 2-core machine the second run of a pair
 * is often the slower (docs/benchmarks.md, "Fewer promises in the shard runner"), so a fixed order
 * biases the comparison against the second column.
 *
 *   npx tsx scripts/bench-ab.ts --a ../before --b . --pairs 6        # 8 ranks, batch 64, 12 iterations
 *
 * Each checkout needs its node_modules (a worktree can link the main one). Prints every run's
 * transitions, worker and server CPU and the medians of the transition steps
 * (scripts/transition-steps.ts), then the mean of each figure per checkout, their ratio, and the
 * mean per position in a pair.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { median } from '../src/controlPlaneBench/report';
import type { PointSummary } from '../src/controlPlaneBench/report';
import { dumpedLocalActivitiesPerIteration, dumpedTransitionSteps } from '../src/controlPlaneBench/dumpedSteps';
import { BATCH_TO_TRAIN_STEPS, TRAIN_TO_ROLLING_STEPS } from '../src/controlPlaneBench/transitionSteps';
import { checkIntRange } from '../src/validation/patterns';

type Side = 'A' | 'B';
interface Run {
  side: Side;
  pair: number;
  position: 1 | 2;
  figures: Map<string, number>;
}

const BENCH_SCRIPT = path.join('scripts', 'bench-control-plane.ts');

function checkout(flag: string, dir: string | undefined): string {
  if (dir === undefined) throw new Error(`${flag} <dir> is required: a checkout of the code to compare`);
  const root = path.resolve(dir);
  for (const needed of [BENCH_SCRIPT, 'node_modules']) {
    if (!existsSync(path.join(root, needed))) throw new Error(`${flag} ${root}: no ${needed} there (a checkout with its node_modules, e.g. a git worktree with node_modules linked)`);
  }
  return root;
}

function runBench(cwd: string, args: string[], logFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('npx', ['tsx', BENCH_SCRIPT, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      writeFileSync(logFile, output);
      if (code === 0) return resolve();
      reject(new Error(`the bench in ${cwd} exited with code ${code} (signal ${signal}); the end of its output (all of it in ${logFile}, kept with --keep):\n${output.split('\n').slice(-30).join('\n')}`));
    });
  });
}

/** Medians of each transition step over the iterations of the folder's runs. */
function stepMedians(dir: string): Map<string, number> {
  const steps = [...dumpedTransitionSteps(dir).values()].flat();
  const rows = [...steps.map((s) => s.batchToTrain), ...steps.flatMap((s) => (s.trainToRolling === undefined ? [] : [s.trainToRolling]))];
  const medians = new Map<string, number>();
  for (const name of [...BATCH_TO_TRAIN_STEPS, ...TRAIN_TO_ROLLING_STEPS]) {
    const values = rows.map((row) => row[name]).filter((ms): ms is number => ms !== undefined);
    if (values.length > 0) medians.set(`step: ${name}`, median(values));
  }
  return medians;
}

function figuresOf(jsonFile: string, historiesDir: string): Map<string, number> {
  const { summaries } = JSON.parse(readFileSync(jsonFile, 'utf8')) as { summaries: PointSummary[] };
  const summary = summaries[0];
  if (summary === undefined || summaries.length !== 1) throw new Error(`${jsonFile}: expected the summary of one bench point, got ${summaries.length}`);
  return new Map([
    ['batch→train + train→rolling (medians)', summary.batchToTrainMs + summary.trainToRolloutMs],
    ['batch→train (median)', summary.batchToTrainMs],
    ['train→rolling (median)', summary.trainToRolloutMs],
    ['seen lag', summary.batchSeenLagMs],
    ['worker CPU ms/iteration', summary.workerCpuMsPerIteration],
    ['server CPU ms/iteration', summary.serverCpuMsPerIteration],
    // A count, not ms: stops that settled shards from the store (a local activity and a workflow task more).
    ['stops settled from the store per 100 iterations (count)', 100 * dumpedLocalActivitiesPerIteration(historiesDir, 'settleShards')],
    ...stepMedians(historiesDir),
  ]);
}

const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
const fmt = (ms: number): string => String(Math.round(ms));

function report(runs: readonly Run[]): void {
  const names = [...new Set(runs.flatMap((run) => [...run.figures.keys()]))];
  const valuesOf = (name: string, keep: (run: Run) => boolean) => runs.filter(keep).flatMap((run) => (run.figures.has(name) ? [run.figures.get(name)!] : []));
  console.log('\n| figure (ms) | A, per run | B, per run | mean A | mean B | B / A | mean of first runs | mean of second runs |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const name of names) {
    const a = valuesOf(name, (run) => run.side === 'A');
    const b = valuesOf(name, (run) => run.side === 'B');
    const first = valuesOf(name, (run) => run.position === 1);
    const second = valuesOf(name, (run) => run.position === 2);
    if (a.length === 0 || b.length === 0) continue;
    console.log(
      `| ${name} | ${a.map(fmt).join(' / ')} | ${b.map(fmt).join(' / ')} | ${fmt(mean(a))} | ${fmt(mean(b))} | ${(mean(b) / mean(a)).toFixed(3)} | ${fmt(mean(first))} | ${fmt(mean(second))} |`,
    );
  }
}

async function main(): Promise<void> {
  const flags = new Command('bench-ab')
    .option('--a <dir>', 'checkout A (the reference)')
    .option('--b <dir>', 'checkout B (the change)')
    .option('--pairs <n>', 'pairs of runs (the order flips each pair)', Number, 6)
    .option('--ranks <n>', 'ranks', Number, 8)
    .option('--batch <n>', 'batch size', Number, 64)
    .option('--iterations <n>', 'iterations per run', Number, 12)
    .option('--time-scale <x>', 'real seconds per simulated second of the engines (the bench’s own default when absent)', Number)
    .option('--keep', 'keep the runs’ JSON and histories')
    .parse()
    .opts<{ a?: string; b?: string; pairs: number; ranks: number; batch: number; iterations: number; timeScale?: number; keep?: boolean }>();
  const dirs: Record<Side, string> = { A: checkout('--a', flags.a), B: checkout('--b', flags.b) };
  checkIntRange('--pairs', flags.pairs, 1, 100);
  checkIntRange('--ranks', flags.ranks, 2, 4096);
  checkIntRange('--batch', flags.batch, 1, 65_536);
  checkIntRange('--iterations', flags.iterations, 3, 10_000);
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'timeshare-bench-ab-'));
  const pace = flags.timeScale === undefined ? '' : `, time scale ${flags.timeScale}`;
  console.log(`A: ${dirs.A}\nB: ${dirs.B}\n${flags.pairs} pairs of ${flags.ranks} ranks, batch ${flags.batch}, ${flags.iterations} iterations${pace}; scratch ${scratch}`);
  const runs: Run[] = [];
  try {
    for (let pair = 1; pair <= flags.pairs; pair++) {
      const order: Side[] = pair % 2 === 1 ? ['A', 'B'] : ['B', 'A'];
      for (const [index, side] of order.entries()) {
        const stem = path.join(scratch, `${pair}-${side}`);
        const args = ['--ranks', String(flags.ranks), '--batches', String(flags.batch), '--iterations', String(flags.iterations), '--json', `${stem}.json`, '--dump-histories', stem];
        if (flags.timeScale !== undefined) args.push('--time-scale', String(flags.timeScale));
        await runBench(dirs[side], args, `${stem}.log`);
        const figures = figuresOf(`${stem}.json`, stem);
        runs.push({ side, pair, position: index === 0 ? 1 : 2, figures });
        console.log(`pair ${pair}/${flags.pairs}, ${side} (${index === 0 ? 'first' : 'second'}): transitions ${fmt(figures.get('batch→train + train→rolling (medians)')!)} ms, worker CPU ${fmt(figures.get('worker CPU ms/iteration')!)} ms/iteration`);
      }
    }
    report(runs);
  } finally {
    if (flags.keep === true) console.log(`kept ${scratch}`);
    else rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
