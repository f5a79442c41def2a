/**
 * The step breakdown of a transition, on recorded histories (test/fixtures/histories): the steps
 * are consecutive, so they add up to the transition the benchmark measures.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { iterationMoments } from '../../src/controlPlaneBench/historyFigures';
import { BATCH_TO_TRAIN_STEPS, TRAIN_TO_ROLLING_STEPS, transitionSteps } from '../../src/controlPlaneBench/transitionSteps';
import { historyFromJson } from '../helpers/historyJson';

const fixture = (name: string) => historyFromJson(readFileSync(path.join(__dirname, '..', 'fixtures', 'histories', name), 'utf8'));
const sum = (row: Record<string, number>) => Object.values(row).reduce((a, b) => a + b, 0);

describe('transition steps', () => {
  const first = fixture('timeshare-replay-multiplexed-iter-0.json');
  const second = fixture('timeshare-replay-multiplexed-iter-1.json');

  it('splits batch→train and train→rolling into consecutive steps that add up to them', () => {
    const steps = transitionSteps(0, first, second);
    const moments = iterationMoments(first);
    const next = iterationMoments(second);
    expect(sum(steps.batchToTrain)).toBe(moments.trainStartedMs - moments.batchSeenMs);
    expect(sum(steps.trainToRolling!)).toBe(next.rolloutStartedMs - moments.trainDoneMs);
    // The multiplexed iteration stops the released ranks' shards at shrink and every shard after training.
    expect(Object.keys(steps.batchToTrain)).toEqual([...BATCH_TO_TRAIN_STEPS]);
    expect(Object.keys(steps.trainToRolling!)).toEqual([...TRAIN_TO_ROLLING_STEPS]);
    for (const ms of [...Object.values(steps.batchToTrain), ...Object.values(steps.trainToRolling!)]) expect(ms).toBeGreaterThanOrEqual(0);
  });

  it('has no train→rolling for the last iteration', () => {
    expect(transitionSteps(1, second, undefined).trainToRolling).toBeUndefined();
  });
});
