/** The Temporal UI addresses `timeshare dev` prints for its run. */
import { describe, expect, it } from 'vitest';
import { interruption, temporalUiLines } from '../../src/cli/dev';

describe('timeshare dev: the Temporal UI lines', () => {
  it("names the run's workflow, and its list as the run and its iterations (not all runs)", () => {
    expect(temporalUiLines('http://127.0.0.1:8233', 'multiplexed')).toEqual([
      'Temporal UI: http://127.0.0.1:8233/namespaces/default/workflows/timeshare-multiplexed',
      '  (the run and its iterations: http://127.0.0.1:8233/namespaces/default/workflows?query=TimeshareRunId%3D%22multiplexed%22)',
    ]);
  });
});

describe('timeshare dev: what Ctrl-C says', () => {
  it('says what the interruption leaves as it is when the signal comes: a run to resume, or a run that has ended', async () => {
    let ended = false;
    const lines: string[] = [];
    const interrupt = interruption(
      (line) => lines.push(line),
      () => (ended ? 'the run has ended' : 'run the same command again to resume it'),
    );
    try {
      ended = true;
      process.emit('SIGINT', 'SIGINT');
      await interrupt.signalled;
      expect(interrupt.interrupted()).toBe(true);
      expect(lines).toEqual(['\nSIGINT: the run has ended']);
    } finally {
      interrupt.off();
    }
  });
});
