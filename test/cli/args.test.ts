import { describe, expect, it } from 'vitest';
import { integerFlag } from '../../src/cli/args';

describe("integerFlag (scripts' numeric options)", () => {
  it('reads --name N, falls back when absent, and refuses what is not a decimal integer >= min', () => {
    expect(integerFlag(['--samples', '300000'], '--samples', 10)).toBe(300000);
    expect(integerFlag(['--other', '5'], '--samples', 10)).toBe(10);
    expect(() => integerFlag(['--samples', '0x10'], '--samples', 10)).toThrow(/--samples must be a decimal integer >= 1/);
    expect(() => integerFlag(['--samples'], '--samples', 10)).toThrow(/got ''/);
    expect(() => integerFlag(['--samples', '0'], '--samples', 10)).toThrow(/>= 1/);
  });
});
