/**
 * A node's side of a collective (src/activities/weightBroadcast.ts): the first of its ranks to fail
 * aborts the others' calls and is reported at once, rather than after siblings that wait in the
 * collective for a member that died (on NCCL until the group's timeout, past the sync's deadline).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { manifestPath } from '../../src/activities/weightBroadcast';
import type { WeightGroup, WeightManifest } from '../../src/engines/types';
import { engineOnlyNodeActivities, inActivity } from '../helpers/activityContext';

const RUN = 'run-collective';
const GROUP: WeightGroup = { name: 'g1', masterAddress: '127.0.0.1', masterPort: 29_500, worldSize: 3, backend: 'gloo' };
const MANIFEST: WeightManifest = { buckets: [{ names: ['w'], dtypes: ['float32'], shapes: [[2]], bytes: 8 }], totalBytes: 8 };
/** Long enough that only an abort ends a waiting call within a test; ends it anyway, so nothing hangs. */
const WAIT_MS = 10_000;

/** A rank's engine whose collective calls fail at once, succeed, or wait until aborted. */
class CollectiveEngine {
  aborted = false;
  weightVersion = 0;

  constructor(private readonly behaviour: 'fail' | 'succeed' | 'wait') {}

  private collective(what: string, signal?: AbortSignal, onSuccess: () => void = () => undefined): Promise<void> {
    if (this.behaviour === 'fail') return Promise.reject(new Error(`${what}: connection refused by a restarted engine`));
    if (this.behaviour === 'succeed') {
      onSuccess();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, WAIT_MS);
      signal?.addEventListener(
        'abort',
        () => {
          this.aborted = true;
          clearTimeout(timer);
          reject(new Error(`${what}: aborted`));
        },
        { once: true },
      );
    });
  }

  readonly broadcast = {
    joinWeightGroup: (_group: WeightGroup, _offset: number, signal?: AbortSignal) => this.collective('join', signal),
    receiveWeights: (_group: WeightGroup, version: number, _manifest: WeightManifest, signal?: AbortSignal) =>
      this.collective('receive', signal, () => (this.weightVersion = version)),
    leaveWeightGroup: () => Promise.resolve(),
  };

  async status() {
    return { weightVersion: this.weightVersion, resident: ['weights', 'kv_cache'], runningRequests: 0 };
  }
}

describe('a node’s side of a collective', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'timeshare-collective-'));
    const file = manifestPath(dir, GROUP.name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(MANIFEST));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const activitiesFor = (engines: CollectiveEngine[]) => engineOnlyNodeActivities(RUN, engines, dir);

  it('join: the first rank to fail aborts its sibling still waiting in the formation, and its error is the answer', async () => {
    const waiting = new CollectiveEngine('wait');
    const activities = activitiesFor([waiting, new CollectiveEngine('fail')]);
    const join = inActivity(() => activities.joinWeightGroup({ runId: RUN, ranks: [0, 1], group: GROUP, rankOffsets: [1, 2] }), 'joinWeightGroup');
    await expect(join.result).rejects.toThrow(/^join: connection refused by a restarted engine$/);
    expect(waiting.aborted).toBe(true);
  });

  it('receive: the same, for a sibling waiting for a transfer that will not come', async () => {
    const waiting = new CollectiveEngine('wait');
    const activities = activitiesFor([new CollectiveEngine('fail'), waiting]);
    const receive = inActivity(() => activities.receiveWeights({ runId: RUN, ranks: [0, 1], group: GROUP, version: 4 }), 'receiveWeights');
    await expect(receive.result).rejects.toThrow(/^receive: connection refused by a restarted engine$/);
    expect(waiting.aborted).toBe(true);
  });

  it('resolves once every rank received and serves the version', async () => {
    const engines = [new CollectiveEngine('succeed'), new CollectiveEngine('succeed')];
    const activities = activitiesFor(engines);
    await expect(inActivity(() => activities.receiveWeights({ runId: RUN, ranks: [0, 1], group: GROUP, version: 4 }), 'receiveWeights').result).resolves.toBeUndefined();
    expect(engines.map((engine) => engine.weightVersion)).toEqual([4, 4]);
  });
});
