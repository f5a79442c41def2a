import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/validation/patterns';
import { hashString32, hashWords32, inverseNormalCdf, logNormal, logNormalQuantile, uniform01, uniformStream, Z90 } from '../../src/engines/simulated/random';
import { median, quantile } from './helpers';

describe('uniform01: keyed, order-independent draws', () => {
  it('gives the same value for the same key, in any order and after other draws', () => {
    const keys = Array.from({ length: 200 }, (_, i) => ({ id: i * 7919, turn: i % 13 }));
    const forward = new Map(keys.map((k) => [`${k.id}/${k.turn}`, uniform01(42, 'completion-tokens', k.id, k.turn)]));
    // Interleave unrelated draws and go backwards: a stateful generator would give different values.
    const backward = [...keys].reverse().map((k) => {
      uniform01(7, 'other', k.id + 1, 0);
      return [`${k.id}/${k.turn}`, uniform01(42, 'completion-tokens', k.id, k.turn)] as const;
    });
    for (const [key, value] of backward) expect(value).toBe(forward.get(key));
  });

  it('separates seeds, streams, sample ids (also above 2^32) and turns', () => {
    const base = uniform01(1, 'turns', 5, 3);
    expect(uniform01(2, 'turns', 5, 3)).not.toBe(base);
    expect(uniform01(1, 'turnz', 5, 3)).not.toBe(base);
    expect(uniform01(1, 'turns', 6, 3)).not.toBe(base);
    expect(uniform01(1, 'turns', 5, 4)).not.toBe(base);
    expect(uniform01(1, 'turns', 5 + 2 ** 32, 3)).not.toBe(base);
    expect(hashString32('turns')).not.toBe(hashString32('turnz'));
  });

  it('is uniform on (0, 1) over consecutive ids (10 buckets within 5 % of expected)', () => {
    const n = 100_000;
    const buckets = new Array<number>(10).fill(0);
    let outside = 0;
    for (let id = 0; id < n; id++) {
      const u = uniform01(3, 'reward', id);
      if (!(u > 0 && u < 1)) outside++;
      const b = Math.floor(u * 10);
      buckets[b] = (buckets[b] ?? 0) + 1;
    }
    expect(outside).toBe(0);
    for (const count of buckets) expect(Math.abs(count - n / 10)).toBeLessThan(0.05 * (n / 10));
  });

  it('rejects negative or fractional keys with a ValidationError', () => {
    expect(() => uniform01(1, 's', -1)).toThrow(ValidationError);
    expect(() => uniform01(1, 's', 1.5)).toThrow(/sampleId/);
    expect(() => uniform01(1.2, 's', 1)).toThrow(/seed/);
    expect(() => uniform01(1, 's', 1, -3)).toThrow(/turn/);
  });
});

describe('inverseNormalCdf (Acklam)', () => {
  it('matches known quantiles', () => {
    expect(inverseNormalCdf(0.5)).toBeCloseTo(0, 9);
    expect(inverseNormalCdf(0.9)).toBeCloseTo(Z90, 8);
    expect(inverseNormalCdf(0.975)).toBeCloseTo(1.959963984540054, 8);
    expect(inverseNormalCdf(0.025)).toBeCloseTo(-1.959963984540054, 8);
    expect(inverseNormalCdf(1e-6)).toBeCloseTo(-4.753424308822899, 6);
    expect(inverseNormalCdf(1 - 1e-6)).toBeCloseTo(4.753424308822899, 5);
  });

  it('rejects p outside (0, 1)', () => {
    expect(() => inverseNormalCdf(0)).toThrow(RangeError);
    expect(() => inverseNormalCdf(1)).toThrow(RangeError);
    expect(() => inverseNormalCdf(Number.NaN)).toThrow(RangeError);
  });
});

describe('logNormal', () => {
  it('reproduces median and p90 over many keyed draws', () => {
    const spec = { median: 89, p90: 681 };
    const values = Array.from({ length: 40_000 }, (_, id) => logNormal(spec, uniform01(9, 'completion-tokens', id)));
    expect(median(values) / spec.median).toBeGreaterThan(0.97);
    expect(median(values) / spec.median).toBeLessThan(1.03);
    expect(quantile(values, 0.9) / spec.p90).toBeGreaterThan(0.95);
    expect(quantile(values, 0.9) / spec.p90).toBeLessThan(1.05);
  });

  it('is exact at the median and p90 quantiles and constant when p90 = median', () => {
    expect(logNormal({ median: 36, p90: 66 }, 0.5)).toBeCloseTo(36, 6);
    expect(logNormal({ median: 36, p90: 66 }, 0.9)).toBeCloseTo(66, 5);
    expect(logNormal({ median: 500, p90: 500 }, 0.999)).toBe(500);
  });
});

describe('per-stream draws (the simulator\'s hot path)', () => {
  it('uniformStream and logNormalQuantile give exactly uniform01 and logNormal, ids and seeds above 2^32 included', () => {
    const TWO_32 = 2 ** 32;
    for (const seed of [0, 42, TWO_32 + 5]) {
      const draw = uniformStream(seed, 'env-step-ms');
      for (const [id, turn] of [[0, 0], [1, 3], [123_456, 99], [TWO_32 + 17, 2], [9, TWO_32 * 3 + 1]] as const) {
        expect(draw(id, turn)).toBe(uniform01(seed, 'env-step-ms', id, turn));
      }
      expect(draw(7)).toBe(uniform01(seed, 'env-step-ms', 7, 0));
    }
    // The documented hash: MurmurHash3 of the key's words, (0.5 + h) / 2^32.
    const words = [42, 0, hashString32('turns'), 5, 0, 3, 0];
    expect(uniformStream(42, 'turns')(5, 3)).toBe((hashWords32(words) + 0.5) / TWO_32);
    const spec = { median: 400, p90: 1500 };
    const quantileOf = logNormalQuantile(spec);
    for (const u of [1e-9, 0.01, 0.3, 0.5, 0.97, 1 - 1e-9]) expect(quantileOf(u)).toBe(spec.median * Math.exp((Math.log(spec.p90 / spec.median) / Z90) * inverseNormalCdf(u)));
    expect(() => logNormalQuantile({ median: 0, p90: 1 })).toThrow(/0 < median <= p90/);
    expect(() => uniformStream(-1, 'turns')).toThrow(ValidationError);
  });
});
