/** The Temporal UI addresses `timeshare dev` prints for its run. */
import { describe, expect, it } from 'vitest';
import { temporalUiLines } from '../../src/cli/dev';

describe('timeshare dev: the Temporal UI lines', () => {
  it("names the run's workflow, and its list as the run and its iterations (not all runs)", () => {
    expect(temporalUiLines('http://127.0.0.1:8233', 'multiplexed')).toEqual([
      'Temporal UI: http://127.0.0.1:8233/namespaces/default/workflows/timeshare-multiplexed',
      '  (the run and its iterations: http://127.0.0.1:8233/namespaces/default/workflows?query=TimeshareRunId%3D%22multiplexed%22)',
    ]);
  });
});
