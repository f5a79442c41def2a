import { describe, expect, it } from 'vitest';
import { BatchIndex } from '../../src/store/batchIndex';

describe('BatchIndex', () => {
  it('answers which batch lists a sample, the first one read winning, and nothing for others', () => {
    const index = new BatchIndex();
    expect(index.get(0)).toBeUndefined();
    index.add(0, 0);
    index.add(5000, 3);
    index.add(5000, 4);
    expect([index.get(0), index.get(5000), index.get(1), index.get(4999), index.get(10 ** 6)]).toEqual([0, 3, undefined, undefined, undefined]);
    expect(index.has(5000)).toBe(true);
    expect(index.has(7)).toBe(false);
  });

  it('keeps ids and iterations beyond the typed array exactly, and refuses invalid ones', () => {
    const index = new BatchIndex();
    const far = Number.MAX_SAFE_INTEGER;
    index.add(far, 2);
    index.add(3, 2 ** 40);
    index.add(4, 2 ** 31 - 2);
    expect([index.get(far), index.get(3), index.get(4), index.get(far - 1)]).toEqual([2, 2 ** 40, 2 ** 31 - 2, undefined]);
    expect(() => index.add(-1, 0)).toThrow(/VAL_INT_RANGE/);
    expect(() => index.add(1.5, 0)).toThrow(/VAL_INT_RANGE/);
    expect(() => index.add(1, -1)).toThrow(/VAL_INT_RANGE/);
  });
});
