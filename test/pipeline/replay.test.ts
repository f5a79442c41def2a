/**
 * Replay safety: the recorded histories (test/fixtures/histories, refreshed by
 * scripts/record-histories.ts) must replay against the current workflow code without a
 * non-determinism error. A change that breaks this needs a patched() guard (docs/design.md §5.2).
 *
 * Histories recorded before a guarded change are kept in a folder named after the patch
 * (`pre-lost-ranks/`, `pre-direct-stop-running-only/`): they are what a workflow already running
 * at deploy time looks like, and they must keep replaying (patched() is false there, the old path
 * runs). The current fixtures carry the patch markers (the new paths run).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { LOST_RANKS_PATCH } from '../../src/workflows/signals';
import { historyFromJson } from '../helpers/historyJson';
import { workflowBundle } from '../helpers/pipeline';

const DIR = path.join(__dirname, '..', 'fixtures', 'histories');
const OLD_DIR = path.join(DIR, 'pre-lost-ranks');
const BEFORE_RUNNING_ONLY_DIR = path.join(DIR, 'pre-direct-stop-running-only');
const jsonIn = (dir: string) => readdirSync(dir).filter((name) => name.endsWith('.json'));
const current = jsonIn(DIR);
const old = jsonIn(OLD_DIR);
const beforeRunningOnly = jsonIn(BEFORE_RUNNING_ONLY_DIR);

/** Patch ids recorded in a history (core_patch markers). */
function patchIds(file: string): string[] {
  const history = historyFromJson(readFileSync(file, 'utf8'));
  return (history.events ?? []).flatMap((event) => {
    const marker = event.markerRecordedEventAttributes;
    if (marker?.markerName !== 'core_patch') return [];
    const data = marker.details?.['patch-data']?.payloads?.[0]?.data;
    return data ? [(JSON.parse(Buffer.from(data).toString('utf8')) as { id: string }).id] : [];
  });
}

describe('replay of recorded histories', () => {
  it('has fixtures for the run workflow and iterations of every strategy, current and from before the lost-ranks change', () => {
    for (const strategy of ['multiplexed', 'colocated', 'disaggregated']) {
      for (const files of [current, old, beforeRunningOnly]) {
        expect(files).toContain(`timeshare-replay-${strategy}.json`);
        expect(files).toContain(`timeshare-replay-${strategy}-iter-0.json`);
      }
    }
  });

  it(`current fixtures take the '${LOST_RANKS_PATCH}' path (and later patched changes), the old ones none`, () => {
    for (const file of current) expect(patchIds(path.join(DIR, file)), file).toContain(LOST_RANKS_PATCH);
    for (const file of old) expect(patchIds(path.join(OLD_DIR, file)), file).toEqual([]);
    // Iterations that stop shards carry the newest patch only in the current fixtures.
    const iterations = (files: string[]) => files.filter((file) => file.includes('-iter-'));
    for (const file of iterations(current)) expect(patchIds(path.join(DIR, file)), file).toContain('direct-stop-running-only');
    for (const file of iterations(beforeRunningOnly)) expect(patchIds(path.join(BEFORE_RUNNING_ONLY_DIR, file)), file).not.toContain('direct-stop-running-only');
  });

  for (const [dir, files] of [
    [DIR, current],
    [OLD_DIR, old],
    [BEFORE_RUNNING_ONLY_DIR, beforeRunningOnly],
  ] as const) {
    for (const file of files) {
      it(`replays ${path.relative(DIR, path.join(dir, file))}`, async () => {
        const history = historyFromJson(readFileSync(path.join(dir, file), 'utf8'));
        const workflowId = file.replace(/\.json$/, '');
        await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, workflowId);
      });
    }
  }
});
