import { describe, expect, it } from 'vitest';
import { SimGpuMemory, SimGpuMemoryLedgerError, SimulatedOutOfMemoryError } from '../../src/engines/simulated/gpuMemory';
import { ValidationError } from '../../src/validation/patterns';

describe('SimGpuMemory', () => {
  it('allocates and frees per owner and GPU', () => {
    const mem = new SimGpuMemory({ capacityGiB: 80, gpus: [0, 1] });
    mem.allocate('rollout rank 0 weights', [0, 1], 30);
    mem.allocate('rollout rank 0 kv_cache', [0, 1], 40);
    expect(mem.usedGiB(0)).toBe(70);
    expect(mem.freeGiB(1)).toBe(10);
    mem.free('rollout rank 0 kv_cache', [0, 1]);
    expect(mem.freeGiB(0)).toBe(50);
    expect(mem.holders(0)).toEqual([{ owner: 'rollout rank 0 weights', gib: 30 }]);
  });

  it('throws SimulatedOutOfMemoryError naming GPU, requester, requested vs free, holders; allocates nothing', () => {
    const mem = new SimGpuMemory({ capacityGiB: 80, gpus: [0, 1] });
    mem.allocate('rollout rank 1 weights', [1], 30);
    mem.allocate('rollout rank 1 kv_cache', [1], 40);
    let err: unknown;
    try {
      mem.allocate('trainer node 0', [0, 1], 60);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SimulatedOutOfMemoryError);
    const oom = err as SimulatedOutOfMemoryError;
    expect(oom.gpu).toBe(1);
    expect(oom.message).toBe(
      'simulated CUDA out of memory on GPU 1: trainer node 0 requested 60 GiB but only 10 of 80 GiB are free; ' +
        'held by: rollout rank 1 weights 30 GiB, rollout rank 1 kv_cache 40 GiB',
    );
    // All or nothing: GPU 0 had room but got nothing.
    expect(mem.usedGiB(0)).toBe(0);
  });

  it('rejects bookkeeping bugs: double allocation, freeing what is not held, unknown or duplicate GPUs', () => {
    const mem = new SimGpuMemory({ capacityGiB: 80, gpus: [0, 1] });
    mem.allocate('a', [0], 1);
    expect(() => mem.allocate('a', [0], 1)).toThrow(SimGpuMemoryLedgerError);
    expect(() => mem.free('a', [0, 1])).toThrow(/GPU\(s\) 1 where it holds none/);
    expect(() => mem.allocate('b', [5], 1)).toThrow(ValidationError);
    expect(() => mem.allocate('b', [1, 1], 1)).toThrow(/VAL_NO_DUPLICATES/);
  });

  it('adopts memory held by a surviving engine: no-op if shown, allocation if not', () => {
    const mem = new SimGpuMemory({ capacityGiB: 80 }); // open ledger: GPUs appear on first use
    mem.adopt('e', [2, 3], 30);
    mem.adopt('e', [2, 3], 30);
    expect(mem.usedGiB(3)).toBe(30);
    mem.free('e', [3]);
    expect(() => mem.adopt('e', [2, 3], 30)).toThrow(/inconsistent ledger/);
  });
});
