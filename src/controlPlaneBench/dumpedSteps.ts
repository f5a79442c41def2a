/**
 * The transition steps of every run in a `--dump-histories` folder of the control-plane bench
 * (`<workflow id>-iter-<k>.json`), as scripts/transition-steps.ts and scripts/bench-ab.ts read them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJson } from '../temporal/historyJson';
import { localActivityTypes } from './historyFigures';
import { transitionSteps, type TransitionSteps } from './transitionSteps';

/** Run (workflow id prefix) → iteration → its history file. */
function dumpedFiles(dir: string): Map<string, Map<number, string>> {
  const byRun = new Map<string, Map<number, string>>();
  for (const name of readdirSync(dir)) {
    const match = /^(.*)-iter-(\d+)\.json$/.exec(name);
    if (match === null) continue;
    const files = byRun.get(match[1]!) ?? new Map<number, string>();
    files.set(Number(match[2]), path.join(dir, name));
    byRun.set(match[1]!, files);
  }
  if (byRun.size === 0) throw new Error(`${dir}: no iteration histories (<workflow id>-iter-<k>.json)`);
  return byRun;
}

/** Run (workflow id prefix) → the steps of its iterations; a run's first iteration is left out: it starts on an empty store. */
export function dumpedTransitionSteps(dir: string): Map<string, TransitionSteps[]> {
  const byRun = dumpedFiles(dir);
  const steps = new Map<string, TransitionSteps[]>();
  for (const [run, files] of byRun) {
    const load = (k: number) => (files.has(k) ? historyFromJson(readFileSync(files.get(k)!, 'utf8')) : undefined);
    const iterations = [...files.keys()].sort((a, b) => a - b).filter((k) => k > 0);
    steps.set(run, iterations.map((k) => transitionSteps(k, load(k)!, load(k + 1))));
  }
  return steps;
}

/** Local activities of one type per iteration, over every run's iterations after its first (which recovers from the store). */
export function dumpedLocalActivitiesPerIteration(dir: string, type: string): number {
  let count = 0;
  let iterations = 0;
  for (const files of dumpedFiles(dir).values()) {
    for (const [k, file] of files) {
      if (k === 0) continue;
      iterations += 1;
      count += localActivityTypes(historyFromJson(readFileSync(file, 'utf8'))).filter((name) => name === type).length;
    }
  }
  if (iterations === 0) throw new Error(`${dir}: no iteration after the first to count local activities in`);
  return count / iterations;
}
