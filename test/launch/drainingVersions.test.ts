/**
 * The workers `dev` keeps for older workflow code versions (src/launch/drainingVersions.ts): one
 * per version the run is pinned to, never for the current one, stopped once the version drains;
 * a version without a cached bundle is named once; a failed probe changes nothing.
 */
import { describe, expect, it } from 'vitest';
import { DrainingVersions, type DrainingVersionsOptions } from '../../src/launch/drainingVersions';

/** `answers`: what successive probes return (the last one repeats), or the probe itself. */
function harness(answers: (Map<string, string[]> | Error)[] | DrainingVersionsOptions['probe'], bundles: Record<string, string>, deploymentCurrent: () => string | undefined = () => 'new') {
  const started: string[] = [];
  const stopped: string[] = [];
  const lines: string[] = [];
  let probes = 0;
  const options: DrainingVersionsOptions = {
    probe:
      typeof answers === 'function'
        ? answers
        : async () => {
            const answer = answers[Math.min(probes++, answers.length - 1)]!;
            if (answer instanceof Error) throw answer;
            return answer;
          },
    currentBuildId: () => 'new',
    deploymentCurrent: async () => deploymentCurrent(),
    bundleOf: (buildId) => bundles[buildId],
    start: (buildId, bundle) => {
      started.push(`${buildId}@${bundle}`);
      return { stop: async () => void stopped.push(buildId) };
    },
    log: (line) => lines.push(line),
    missingBundleHint: (buildId) => `run a worker of ${buildId}`,
  };
  return { versions: new DrainingVersions(options), started, stopped, lines };
}

const pinned = (entries: Record<string, string[]>): Map<string, string[]> => new Map(Object.entries(entries));

describe('workers of the versions a run is still pinned to', () => {
  it('starts an old version only once a newer one is current, so the run moves on when its pinned iteration ends', async () => {
    let current: string | undefined;
    const { versions, started, lines } = harness([pinned({ old: ['run', 'iteration-0'] })], { old: '/cache/old.js' }, () => current);
    await versions.reconcile();
    current = 'old'; // the deployment still names the old version current
    await versions.reconcile();
    expect(started).toEqual([]);
    expect(lines).toEqual(['run and iteration-0 are pinned to the workflow code version old: its orchestrator worker starts once a newer version is current']);
    current = 'new';
    await versions.reconcile();
    expect(started).toEqual(['old@/cache/old.js']);
  });

  it('starts one worker per old version, none for the current one, and stops it once the version drains', async () => {
    const { versions, started, stopped, lines } = harness(
      [
        pinned({ old: ['run', 'iteration-3'], new: ['other'] }),
        pinned({ old: ['run'], new: ['iteration-4'] }),
        pinned({ new: ['run', 'iteration-5'] }),
      ],
      { old: '/cache/old.js', new: '/cache/new.js' },
    );
    await versions.reconcile();
    expect(started).toEqual(['old@/cache/old.js']);
    expect(versions.serving).toEqual(['old']);
    expect(lines[0]).toBe('run and iteration-3 are pinned to the workflow code version old: started an orchestrator worker of that version from /cache/old.js');
    await versions.reconcile();
    expect(started).toHaveLength(1);
    expect(stopped).toEqual([]);
    await versions.reconcile();
    expect(stopped).toEqual(['old']);
    expect(versions.serving).toEqual([]);
    expect(lines.at(-1)).toMatch(/^version old drained .*: its orchestrator worker stopped$/);
  });

  it('names a pinned version without a cached bundle once, and starts it when its bundle appears', async () => {
    const bundles: Record<string, string> = {};
    const { versions, started, lines } = harness([pinned({ gone: ['iteration-2'] })], bundles);
    await versions.reconcile();
    await versions.reconcile();
    expect(started).toEqual([]);
    expect(lines).toEqual(['iteration-2 is pinned to the workflow code version gone, whose workflow bundle is not cached: run a worker of gone']);
    bundles.gone = '/cache/gone.js';
    await versions.reconcile();
    expect(started).toEqual(['gone@/cache/gone.js']);
  });

  it('keeps its workers through a failed probe and says so once per distinct failure', async () => {
    const down = new Error('server unreachable');
    const { versions, started, stopped, lines } = harness([pinned({ old: ['run'] }), down, down, pinned({ old: ['run'] })], { old: '/cache/old.js' });
    for (let k = 0; k < 4; k++) await versions.reconcile();
    expect(started).toHaveLength(1);
    expect(stopped).toEqual([]);
    expect(lines.filter((line) => line.includes('server unreachable'))).toEqual(['could not read which versions the run is pinned to (will look again): server unreachable']);
    await versions.stopAll();
    expect(stopped).toEqual(['old']);
  });

  it('watches until told to stop, then looks no more', async () => {
    const { versions, started } = harness([pinned({ old: ['run'] })], { old: '/cache/old.js' });
    const stop = versions.watch(1);
    await new Promise((resolve) => setTimeout(resolve, 30));
    await stop();
    expect(started).toEqual(['old@/cache/old.js']);
    const reconcile = versions.reconcile.bind(versions);
    let after = 0;
    versions.reconcile = async () => {
      after++;
      return reconcile();
    };
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(after).toBe(0);
  });
});

describe('stopping while a look is under way', () => {
  it('returns after the settle bound, and the look that ends after stopAll starts nothing', async () => {
    let answer: (pinnedNow: Map<string, string[]>) => void = () => undefined;
    const { versions, started } = harness(() => new Promise((resolve) => (answer = resolve)), { old: '/cache/old.js' });
    const stop = versions.watch(1_000, 5);
    await stop();
    await versions.stopAll();
    // The look begun by watch() ends only now, after stopAll.
    answer(pinned({ old: ['run'] }));
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(started).toEqual([]);
    expect(versions.serving).toEqual([]);
  });
});
