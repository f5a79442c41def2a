/**
 * The benchmark's history analysis, on recorded histories (test/fixtures/histories): counts and
 * moments checked against the raw events, and the target checks against hand-made summaries.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { activitySpans, executionAttempt, executionSpan, historyBytes, iterationMoments, shardRanks } from '../../src/controlPlaneBench/historyFigures';
import { checkTargets, median, type PointSummary } from '../../src/controlPlaneBench/report';
import { historyFromJson } from '../helpers/historyJson';
import { syntheticHistory, type SyntheticActivity } from '../helpers/syntheticHistory';

const EventType = temporal.api.enums.v1.EventType;
const fixture = (name: string, folder = 'histories') => historyFromJson(readFileSync(path.join(__dirname, '..', 'fixtures', folder, name), 'utf8'));

describe('history figures', () => {
  const history = fixture('timeshare-replay-multiplexed-iter-1.json');
  const events = history.events ?? [];

  it('counts every event and every scheduled activity, and sizes the history as encoded', () => {
    const moments = iterationMoments(history);
    expect(moments.events).toBe(events.length);
    const scheduled = events.filter((event) => event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED).length;
    expect(Object.values(moments.activities).reduce((a, b) => a + b, 0)).toBe(scheduled);
    expect(moments.activities.trainStep).toBe(1);
    expect(moments.workflowTaskTimeouts).toBe(0);
    // The first iteration always waits for its batch; a later one may find it complete at its
    // start (carried-over samples) and train at once, as this recording's may.
    expect(iterationMoments(fixture('timeshare-replay-multiplexed-iter-0.json')).activities.awaitBatch).toBeGreaterThanOrEqual(1);
    // The encoded size is the sum of the events' encoded sizes plus their field headers.
    const eventBytes = events.reduce((sum, event) => sum + temporal.api.history.v1.HistoryEvent.encode(event).finish().length, 0);
    expect(historyBytes(history)).toBeGreaterThan(eventBytes);
    expect(historyBytes(history)).toBeLessThan(eventBytes + events.length * 4);
  });

  it('orders the transitions as the iteration runs them', () => {
    const m = iterationMoments(history);
    expect(m.startedMs).toBeLessThanOrEqual(m.rolloutStartedMs);
    // A batch completed by carried-over samples can be seen before the last shard starts.
    expect(m.startedMs).toBeLessThanOrEqual(m.batchSeenMs);
    expect(m.batchSeenMs).toBeLessThanOrEqual(m.trainStartedMs);
    expect(m.trainStartedMs).toBeLessThanOrEqual(m.trainDoneMs);
    expect(m.trainDoneMs).toBeLessThanOrEqual(m.expandDoneMs);
    expect(m.expandDoneMs).toBeLessThanOrEqual(m.closedMs);
  });

  it('pairs every closed activity with its scheduling event', () => {
    const spans = activitySpans(history);
    expect(spans.every((span) => span.outcome !== undefined && span.closedMs! >= span.startedMs! && span.startedMs! >= span.scheduledMs)).toBe(true);
  });

  it('reads the attempt of the execution', () => {
    expect(executionAttempt(history)).toBe(1);
  });

  it('reads an iteration whose batch was complete at its start: no batch watch, rolling on the kept ranks only', () => {
    // Recorded by `npx tsx scripts/bench-control-plane.ts --ranks 8 --batches 64 --dump-histories DIR`
    // (ranks 0-3 train): samples carried over completed the batch, so the program trained at once.
    const fastPath = fixture('batch-complete-at-start-iteration.json', 'bench');
    const spans = activitySpans(fastPath);
    expect(spans.some((span) => span.name === 'awaitBatch')).toBe(false);
    const trainScheduled = spans.find((span) => span.name === 'trainStep')!.scheduledEventId;
    const firstWave = spans.filter((span) => span.name === 'runRolloutShard' && span.scheduledEventId < trainScheduled);
    expect(new Set(firstWave.map((span) => span.taskQueue.replace(/.*-rank-/, 'rank ')))).toEqual(new Set(['rank 4', 'rank 5', 'rank 6', 'rank 7']));
    expect(spans.filter((span) => span.name === 'stopShards' && span.scheduledEventId < trainScheduled)).toEqual([]);
    const m = iterationMoments(fastPath);
    const firstTaskDone = (fastPath.events ?? []).find((event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)!;
    expect(m.batchSeenMs).toBe(Math.floor(Number(firstTaskDone.eventTime!.seconds) * 1000 + firstTaskDone.eventTime!.nanos! / 1e6));
    expect(m.rolloutStartedMs).toBe(Math.max(...firstWave.map((span) => span.startedMs!)));
    expect(m.startedMs).toBeLessThanOrEqual(m.batchSeenMs);
    expect(m.batchSeenMs).toBeLessThanOrEqual(m.trainStartedMs);
  });

  it('refuses a history that does not end with the completed execution', () => {
    const truncated = temporal.api.history.v1.History.create({ events: events.slice(0, -1) });
    expect(() => executionSpan(truncated)).toThrow(/does not end with a completed execution/);
    expect(() => iterationMoments(temporal.api.history.v1.History.create({ events: [] }))).toThrow(/does not begin/);
  });
});

describe('history figures of shards run as one activity per node (runRolloutShards)', () => {
  const shardInput = (rank: number) => ({ runId: 'groups', shardId: `s${rank}`, rank, sampleIds: [rank] });
  const group = (queueRank: number, ranks: number[], startedMs: number | undefined): SyntheticActivity => ({
    type: 'runRolloutShards',
    taskQueue: `timeshare-rank-${queueRank}`,
    input: { runId: 'groups', shards: ranks.map(shardInput) },
    scheduledMs: 100,
    startedMs,
    closedMs: 800,
  });
  const single = (rank: number, startedMs: number): SyntheticActivity => ({ type: 'runRolloutShard', taskQueue: `timeshare-rank-${rank}`, input: shardInput(rank), scheduledMs: 100, startedMs, closedMs: 800 });
  /** Shards launched, then the batch watch (answered at 500) and the train step (600-700). */
  const iteration = (shards: SyntheticActivity[]) =>
    syntheticHistory({
      input: { iteration: 0 },
      startedMs: 0,
      closedMs: 1000,
      activities: [
        ...shards,
        { type: 'awaitBatch', taskQueue: 'timeshare-orchestrator', input: {}, scheduledMs: 150, startedMs: 160, closedMs: 500 },
        { type: 'trainStep', taskQueue: 'timeshare-trainer-node-0', input: { node: 0 }, scheduledMs: 550, startedMs: 600, closedMs: 700 },
      ],
    });

  it('counts a group as starting a shard on each member’s rank: rolling once every rank’s first shard started', () => {
    // Rank 1's first shard is its group's (200), not its later single one (400); ranks 2 and 3 start at 300.
    const m = iterationMoments(iteration([group(0, [0, 1], 200), group(2, [2, 3], 300), single(1, 400)]));
    expect(m.rolloutStartedMs).toBe(300);
    expect(m.batchSeenMs).toBe(500);
    expect(m.activities).toMatchObject({ runRolloutShards: 2, runRolloutShard: 1 });
    // A member rank whose only shard is in a group holds the moment back until the group starts.
    expect(iterationMoments(iteration([single(0, 200), group(0, [1, 2], 450)])).rolloutStartedMs).toBe(450);
    // A group stopped before it started never rolled: it does not hold the moment back.
    expect(iterationMoments(iteration([group(0, [0, 1], 250), group(2, [2, 3], undefined)])).rolloutStartedMs).toBe(250);
  });

  it('reads a shard activity’s ranks from its input, and refuses a group with no member', () => {
    const spans = activitySpans(iteration([group(0, [0, 1, 3], 200), single(2, 300)]));
    expect(spans.filter((span) => span.name.startsWith('runRolloutShard')).map(shardRanks)).toEqual([[0, 1, 3], [2]]);
    expect(() => iterationMoments(iteration([group(0, [], 200)]))).toThrow(/runRolloutShards scheduled at event \d+: unexpected input: shards: Too small/);
  });
});

describe('target checks', () => {
  const summary = (ranks: number, batch: number, events: number, latency: number): PointSummary => ({
    ranks,
    batch,
    iterations: 3,
    retries: 0,
    workflowTaskTimeouts: 0,
    wallMs: 1000,
    rolloutMs: 100,
    batchSeenLagMs: 10,
    batchToTrainMs: latency,
    batchToTrainMaxMs: latency,
    trainToRolloutMs: latency,
    trainToRolloutMaxMs: latency,
    orchestrationMs: 2 * latency,
    eventsPerIteration: events,
    bytesPerIteration: 1000,
    runEventsPerIteration: 30,
    runBytesPerIteration: 10_000,
    workerCpuMsPerIteration: 100,
    serverCpuMsPerIteration: 100,
    workerPeakRssMiB: 300,
  });

  it('flags events that grow with batch size and slow transitions, passes flat ones', () => {
    const growing = checkTargets([summary(8, 64, 200, 50), summary(8, 2048, 900, 50)]);
    expect(growing.find((c) => c.target.startsWith('events per iteration'))?.met).toBe(false);
    expect(growing.find((c) => c.target.startsWith('median batch ready'))?.met).toBe(true);
    const flat = checkTargets([summary(8, 64, 200, 150), summary(8, 2048, 210, 150)]);
    expect(flat.find((c) => c.target.startsWith('events per iteration'))?.met).toBe(true);
    expect(flat.find((c) => c.target.startsWith('median batch ready'))?.met).toBe(false);
    expect(flat.find((c) => c.target === 'no iteration fails')?.met).toBe(true);
    const failing = checkTargets([{ ...summary(256, 256, 3000, 50), retries: 1 }]);
    expect(failing.find((c) => c.target === 'no iteration fails')).toMatchObject({ met: false, detail: '1 retried at 256 ranks, batch 256' });
  });

  it('takes the median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});
