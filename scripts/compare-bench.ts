/**
 * Compares two bench.json files figure by figure: everything but the timing fields and the
 * config's directory must be identical (e.g. the same bench run by two versions of the code).
 *
 *   npx tsx scripts/compare-bench.ts [--ignore FIELD,...] before/bench.json after/bench.json
 *
 * `--ignore bestStaticSplit` compares all but the split search (a bounded search simulates fewer
 * candidates than an exhaustive one; scripts/check-split-search.ts compares the two searches).
 *
 * Exits 0 when identical, 1 with the first difference shown otherwise.
 */
import { readFileSync } from 'node:fs';

const TIMING_FIELDS = ['wallSeconds', 'simulationWallSeconds', 'simulationCpuSeconds', 'wallSecondsByStrategy', 'splitSearchSimulationWallSeconds'];

function figures(file: string, ignored: readonly string[]): string {
  const bench = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  for (const field of [...TIMING_FIELDS, ...ignored]) delete bench[field];
  if (typeof bench.config === 'string') bench.config = bench.config.replace(/^.*\/examples\//, 'examples/');
  return JSON.stringify(bench);
}

const args = process.argv.slice(2);
const ignoreAt = args.indexOf('--ignore');
const ignored = ignoreAt >= 0 ? (args.splice(ignoreAt, 2)[1] ?? '').split(',').filter((field) => field !== '') : [];
const [before, after] = args;
if (before === undefined || after === undefined || args.length !== 2) {
  console.error('usage: npx tsx scripts/compare-bench.ts [--ignore FIELD,...] BEFORE/bench.json AFTER/bench.json');
  process.exit(2);
}
const a = figures(before, ignored);
const b = figures(after, ignored);
if (a === b) {
  const left = [...TIMING_FIELDS, ...ignored].join(', ');
  console.log(`identical: every figure of ${before} and ${after} (${a.length} characters of JSON; ${left} left out)`);
} else {
  let i = 0;
  while (a[i] === b[i]) i++;
  console.log(`DIFFERENT at character ${i} of the figures:\n  ${before}: …${a.slice(Math.max(0, i - 120), i + 120)}…\n  ${after}: …${b.slice(Math.max(0, i - 120), i + 120)}…`);
  process.exit(1);
}
