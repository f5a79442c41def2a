/**
 * Builds the workflow bundle of the current sources into the bundle cache (or finds it there) and
 * prints its build id and path; `--out FILE` also copies it, gzipped when FILE ends in .gz (to
 * freeze a version's bundle for the replay test: test/fixtures/versions.ts).
 *
 *   npx tsx scripts/build-workflow-bundle.ts [--out FILE]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { cachedWorkflowBundle } from '../src/workers/bundle';
import { WORKFLOW_BUNDLE_INPUTS } from '../src/workers/orchestrator';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const outIndex = args.indexOf('--out');
  const out = outIndex >= 0 ? args[outIndex + 1] : undefined;
  if (outIndex >= 0 && out === undefined) throw new Error('--out needs a file name');
  const started = Date.now();
  const bundle = await cachedWorkflowBundle(WORKFLOW_BUNDLE_INPUTS);
  console.log(`build id ${bundle.buildId}: ${bundle.codePath} (${bundle.built ? 'built' : 'cached'}, ${Date.now() - started} ms)`);
  if (out !== undefined) {
    mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
    const code = readFileSync(bundle.codePath);
    writeFileSync(out, out.endsWith('.gz') ? gzipSync(code, { level: 9 }) : code);
    console.log(`copied to ${out}`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
