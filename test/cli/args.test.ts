import { describe, expect, it } from 'vitest';
import { integerFlag, parseDecimal, parseDecimalList } from '../../src/cli/args';

describe("integerFlag (scripts' numeric options)", () => {
  it('reads --name N, falls back when absent, and refuses what is not a decimal integer >= min', () => {
    expect(integerFlag(['--samples', '300000'], '--samples', 10)).toBe(300000);
    expect(integerFlag(['--other', '5'], '--samples', 10)).toBe(10);
    expect(() => integerFlag(['--samples', '0x10'], '--samples', 10)).toThrow(/--samples must be a decimal integer >= 1/);
    expect(() => integerFlag(['--samples'], '--samples', 10)).toThrow(/got ''/);
    expect(() => integerFlag(['--samples', '0'], '--samples', 10)).toThrow(/>= 1/);
  });
});

describe('rank lists and numbers typed on the command line', () => {
  it('reads ranges as GPU lists in a config do, and refuses backwards, huge and overlapping ones', () => {
    expect(parseDecimalList('rank ids', '0-3', 0)).toEqual([0, 1, 2, 3]);
    expect(parseDecimalList('rank ids', '0,2-4,7', 0)).toEqual([0, 2, 3, 4, 7]);
    expect(parseDecimalList('rank ids', '5-5', 0)).toEqual([5]);
    expect(() => parseDecimalList('rank ids', '3-1', 0)).toThrow(/range '3-1' runs backwards \(write 1-3\)/);
    expect(() => parseDecimalList('rank ids', '0-99999999', 0)).toThrow(/range '0-99999999' holds more than 65536 values/);
    expect(() => parseDecimalList('rank ids', '0-3,2', 0)).toThrow(/2 listed more than once/);
    expect(() => parseDecimalList('rank ids', '-1', 0)).toThrow(/rank ids must be a decimal integer >= 0 \(got '-1'\)/);
    expect(() => parseDecimalList('rank ids', '0--3', 0)).toThrow(/rank ids must be a decimal integer >= 0/);
  });

  it('says a number too large to hold is too large, not that it is no integer', () => {
    expect(() => parseDecimal('rank ids', '99999999999999999999', 0)).toThrow(/rank ids: '99999999999999999999' is too large/);
  });
});
