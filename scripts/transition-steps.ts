/**
 * Where batch→train and train→rolling spend their time, step by step, from the iteration
 * histories a control-plane bench run dumped (docs/benchmarks.md "Control-plane cost", code H):
 *
 *   npx tsx scripts/bench-control-plane.ts --ranks 8 --batches 64 --iterations 10 --dump-histories DIR
 *   npx tsx scripts/transition-steps.ts DIR
 *
 * Prints the median (and max) of each step over the iterations of each run in DIR, and over all
 * of them when DIR holds several runs (the first iteration of a run is left out: it starts on an
 * empty store).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJson } from '../src/temporal/historyJson';
import { median } from '../src/controlPlaneBench/report';
import { BATCH_TO_TRAIN_STEPS, TRAIN_TO_ROLLING_STEPS, transitionSteps, type TransitionSteps } from '../src/controlPlaneBench/transitionSteps';

function main(): void {
  const dir = process.argv[2];
  if (dir === undefined) throw new Error('usage: npx tsx scripts/transition-steps.ts DIR (a --dump-histories folder)');
  const byRun = new Map<string, Map<number, string>>();
  for (const name of readdirSync(dir)) {
    const match = /^(.*)-iter-(\d+)\.json$/.exec(name);
    if (match === null) continue;
    const files = byRun.get(match[1]!) ?? new Map<number, string>();
    files.set(Number(match[2]), path.join(dir, name));
    byRun.set(match[1]!, files);
  }
  if (byRun.size === 0) throw new Error(`${dir}: no iteration histories (<workflow id>-iter-<k>.json)`);
  const all: TransitionSteps[] = [];
  for (const [run, files] of byRun) {
    const load = (k: number) => (files.has(k) ? historyFromJson(readFileSync(files.get(k)!, 'utf8')) : undefined);
    const steps: TransitionSteps[] = [];
    for (const k of [...files.keys()].sort((a, b) => a - b).filter((k) => k > 0)) steps.push(transitionSteps(k, load(k)!, load(k + 1)));
    all.push(...steps);
    report(`${run}: ${steps.length} iterations`, steps);
  }
  if (byRun.size > 1) report(`all ${byRun.size} runs: ${all.length} iterations`, all);
}

function report(title: string, steps: readonly TransitionSteps[]): void {
  console.log(`\n${title} (median / max ms)`);
  print('batch→train (from the batch watch’s return)', BATCH_TO_TRAIN_STEPS, steps.map((s) => s.batchToTrain));
  print('train→rolling', TRAIN_TO_ROLLING_STEPS, steps.flatMap((s) => (s.trainToRolling === undefined ? [] : [s.trainToRolling])));
}

function print(title: string, names: readonly string[], rows: readonly Record<string, number>[]): void {
  console.log(`| ${title} | median | max | iterations with the step |`);
  console.log('|---|---|---|---|');
  let sum = 0;
  for (const name of names) {
    const values = rows.map((row) => row[name]).filter((ms): ms is number => ms !== undefined);
    if (values.length === 0) continue;
    sum += median(values);
    console.log(`| ${name} | ${Math.round(median(values))} | ${Math.max(...values)} | ${values.length}/${rows.length} |`);
  }
  const totals = rows.map((row) => Object.values(row).reduce((a, b) => a + b, 0));
  console.log(`| sum of the medians (median of the totals) | ${Math.round(sum)} (${Math.round(median(totals))}) | ${Math.max(...totals)} | |`);
}

main();
