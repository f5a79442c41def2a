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
import { dumpedTransitionSteps } from '../src/controlPlaneBench/dumpedSteps';
import { median } from '../src/controlPlaneBench/report';
import { BATCH_TO_TRAIN_STEPS, TRAIN_TO_ROLLING_STEPS, type TransitionSteps } from '../src/controlPlaneBench/transitionSteps';

function main(): void {
  const dir = process.argv[2];
  if (dir === undefined) throw new Error('usage: npx tsx scripts/transition-steps.ts DIR (a --dump-histories folder)');
  const byRun = dumpedTransitionSteps(dir);
  for (const [run, steps] of byRun) report(`${run}: ${steps.length} iterations`, steps);
  const all = [...byRun.values()].flat();
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
