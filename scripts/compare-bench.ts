/**
 * Compares two bench.json files figure by figure: everything but the timing fields and the
 * config's directory must be identical (e.g. the same bench run by two versions of the code).
 *
 *   npx tsx scripts/compare-bench.ts before/bench.json after/bench.json
 *
 * Exits 0 when identical, 1 with the first difference shown otherwise.
 */
import { readFileSync } from 'node:fs';

const TIMING_FIELDS = ['wallSeconds', 'simulationWallSeconds', 'simulationCpuSeconds', 'wallSecondsByStrategy', 'splitSearchSimulationWallSeconds'];

function figures(file: string): string {
  const bench = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  for (const field of TIMING_FIELDS) delete bench[field];
  if (typeof bench.config === 'string') bench.config = bench.config.replace(/^.*\/examples\//, 'examples/');
  return JSON.stringify(bench);
}

const [before, after] = process.argv.slice(2);
if (before === undefined || after === undefined) {
  console.error('usage: npx tsx scripts/compare-bench.ts BEFORE/bench.json AFTER/bench.json');
  process.exit(2);
}
const a = figures(before);
const b = figures(after);
if (a === b) {
  console.log(`identical: every figure of ${before} and ${after} (${a.length} characters of JSON; timing fields ${TIMING_FIELDS.join(', ')} left out)`);
} else {
  let i = 0;
  while (a[i] === b[i]) i++;
  console.log(`DIFFERENT at character ${i} of the figures:\n  ${before}: …${a.slice(Math.max(0, i - 120), i + 120)}…\n  ${after}: …${b.slice(Math.max(0, i - 120), i + 120)}…`);
  process.exit(1);
}
