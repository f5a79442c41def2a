/** Per-node activities wait for every rank's call before failing (src/activities/gpuNode.ts). */
import { describe, expect, it } from 'vitest';
import { everyRank } from '../../src/activities/gpuNode';

describe('everyRank', () => {
  it('fails with the first error only after every rank settled', async () => {
    let slowDone = false;
    const slow = new Promise<void>((resolve) =>
      setTimeout(() => {
        slowDone = true;
        resolve();
      }, 50),
    );
    const failing = Promise.reject(new Error('rank 1: engine busy'));
    await expect(everyRank([failing, slow])).rejects.toThrow('rank 1: engine busy');
    expect(slowDone).toBe(true);
  });

  it('resolves when every rank succeeded', async () => {
    await expect(everyRank([Promise.resolve(), Promise.resolve()])).resolves.toBeUndefined();
  });
});
