/** The digits environment: prompt, observations and the verifiable reward, on token ids. */
import { describe, expect, it } from 'vitest';
import { DigitsEnvironment } from '../../src/engines/digits';

const VOCAB = '0123456789?';

describe('DigitsEnvironment', () => {
  const env = new DigitsEnvironment({ vocabulary: VOCAB, turns: 3, shift: 3, seed: 1 });

  it('shows one digit per turn and rewards the fraction of right answers ((d + 3) mod 10)', async () => {
    const sampleId = 42;
    const { promptIds, promptTokens } = await env.reset(sampleId);
    expect(promptIds).toEqual([env.digit(sampleId, 0)]);
    expect(promptTokens).toBe(1);
    const right = (t: number) => [(env.digit(sampleId, t) + 3) % 10];
    const wrong = (t: number) => [(env.digit(sampleId, t) + 4) % 10];
    const s0 = await env.step(sampleId, 0, 1, undefined, [right(0)]);
    expect(s0).toEqual({ observationTokens: 1, observationIds: [env.digit(sampleId, 1)], done: false });
    await env.step(sampleId, 1, 1, undefined, [right(0), wrong(1)]);
    const last = await env.step(sampleId, 2, 2, undefined, [right(0), wrong(1), [...right(2), 11]]);
    expect(last).toMatchObject({ done: true, reward: 2 / 3 });
  });

  it('is a function of (seed, sample, turn): another instance agrees, digits spread over 0-9', () => {
    const other = new DigitsEnvironment({ vocabulary: VOCAB, turns: 3, shift: 3, seed: 1 });
    const digits = Array.from({ length: 200 }, (_, i) => env.digit(i, i % 3));
    expect(digits).toEqual(Array.from({ length: 200 }, (_, i) => other.digit(i, i % 3)));
    expect(new Set(digits).size).toBe(10);
  });

  it('refuses a step without the ids of every turn, a turn past the end and a vocabulary without digits', async () => {
    await expect(env.step(1, 1, 1, undefined, [[3]])).rejects.toThrow(/output ids of turns 0..1/);
    await expect(env.step(1, 0, 2, undefined, [[3]])).rejects.toThrow(/2 generated tokens but 1 ids/);
    await expect(env.step(1, 3, 1, undefined, [[1], [1], [1], [1]])).rejects.toThrow(/turn of sample 1/);
    expect(() => new DigitsEnvironment({ vocabulary: 'abc', turns: 1, shift: 0, seed: 0 })).toThrow(/has no "0"/);
  });

  it('an aborted step rejects (the turn is kept and the step repeated later)', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(env.step(1, 0, 1, controller.signal, [[1]])).rejects.toThrow();
  });
});
