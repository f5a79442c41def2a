/**
 * Replay safety: the recorded histories (test/fixtures/histories, refreshed by
 * scripts/record-histories.ts) must replay against the current workflow code without a
 * non-determinism error. A change that breaks this needs a patched() guard.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { historyFromJson } from '../helpers/historyJson';
import { workflowBundle } from '../helpers/pipeline';

const DIR = path.join(__dirname, '..', 'fixtures', 'histories');
const files = readdirSync(DIR).filter((name) => name.endsWith('.json'));

describe('replay of recorded histories', () => {
  it('has fixtures for the run workflow and iterations of every strategy', () => {
    for (const strategy of ['multiplexed', 'colocated', 'disaggregated']) {
      expect(files).toContain(`timeshare-replay-${strategy}.json`);
      expect(files).toContain(`timeshare-replay-${strategy}-iter-0.json`);
    }
  });

  for (const file of files) {
    it(`replays ${file}`, async () => {
      const history = historyFromJson(readFileSync(path.join(DIR, file), 'utf8'));
      const workflowId = file.replace(/\.json$/, '');
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, workflowId);
    });
  }
});
