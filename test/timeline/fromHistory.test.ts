/**
 * Timelines read back from Temporal: a real run on a real dev server (simulated engines), its
 * iteration workflows' histories turned into per-rank segments, checked against the iteration's
 * order of phases; plus the recorded histories of the other strategies (test/fixtures/histories).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterationWorkflowId } from '../../src/contract/naming';
import { fetchIterationHistories, timelineFromIterationHistories, type IterationHistory } from '../../src/timeline/fromHistory';
import { renderTimelinesSvg, svgToPng } from '../../src/timeline/render';
import { parseTimelines } from '../../src/timeline/schema';
import type { Timeline, TimelineRole, TimelineSegment } from '../../src/timeline/types';
import { historyFromJson } from '../helpers/historyJson';
import { syntheticHistory, type SyntheticActivity } from '../helpers/syntheticHistory';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';
import { runCli } from '../helpers/processes';

const laneSegments = (timeline: Timeline, lane: string): TimelineSegment[] =>
  timeline.segments.filter((segment) => segment.lane === lane).sort((a, b) => a.startMs - b.startMs);

/** Each lane is covered exactly once over [0, endMs]: segments touch end to start, never overlap. */
function expectTiledLanes(timeline: Timeline): void {
  for (const lane of timeline.lanes) {
    const segments = laneSegments(timeline, lane);
    expect(segments[0]?.startMs, lane).toBe(0);
    segments.slice(1).forEach((segment, index) => expect(segment.startMs, `${lane} segment ${index + 1}`).toBe((segments[index] as TimelineSegment).endMs));
    expect(segments[segments.length - 1]?.endMs, lane).toBe(timeline.endMs);
  }
}

/**
 * The lane's roles in time order within iteration `iteration` (0-based, as in workflow ids; the
 * chart labels it iteration + 1), idle left out, repeats collapsed.
 */
function roleSequence(timeline: Timeline, lane: string, iteration: number): TimelineRole[] {
  const roles: TimelineRole[] = [];
  for (const segment of laneSegments(timeline, lane)) {
    if (segment.label !== `iter ${iteration + 1}` || segment.role === 'idle') continue;
    if (roles[roles.length - 1] !== segment.role) roles.push(segment.role);
  }
  return roles;
}

const fixture = (strategy: string, iteration: number): IterationHistory => ({
  iteration,
  history: historyFromJson(readFileSync(path.join(__dirname, '..', 'fixtures', 'histories', `timeshare-replay-${strategy}-iter-${iteration}.json`), 'utf8')),
});

const cli = (args: string[]) => runCli(args, { timeoutMs: 60_000 });

function historyHasActivity({ history }: IterationHistory, activityType: string): boolean {
  return (history.events ?? []).some((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === activityType);
}

describe('timeline from a real run (real Temporal dev server)', () => {
  let env: PipelineEnv;
  let dir: string;
  beforeAll(async () => {
    env = await startPipelineEnv();
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-timeline-run-'));
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await env?.close();
  });

  it('shows every rank rolling out, and the released ranks offload → train → onload (reload and sync in one activity), in wall time', async () => {
    const runId = 'timeline-run';
    const context = env.context(smallConfig({ run: { id: runId, iterations: 2 } }));
    const workers = await env.startWorkers(context);
    try {
      const { spec, handle } = await env.startRun(context);
      await handle.result();
      const { shrinkRanks } = spec.layout;
      expect(shrinkRanks).toEqual([0, 1]);

      const histories = await fetchIterationHistories(env.client, runId);
      expect(histories.map((history) => history.iteration)).toEqual([0, 1]);
      const timeline = timelineFromIterationHistories(histories);
      expect(timeline.source).toBe('temporal-history');
      expect(timeline.strategy).toBe('multiplexed');
      expect(timeline.lanes).toEqual(['rank 0 · GPU 0', 'rank 1 · GPU 1', 'rank 2 · GPU 2', 'rank 3 · GPU 3']);
      expectTiledLanes(timeline);

      // The span is the iterations' own, as Temporal reports it.
      const first = await env.client.workflow.getHandle(iterationWorkflowId(runId, 0)).describe();
      const last = await env.client.workflow.getHandle(iterationWorkflowId(runId, 1)).describe();
      expect(Math.abs(timeline.endMs - ((last.closeTime as Date).getTime() - first.startTime.getTime()))).toBeLessThanOrEqual(1);
      // Numbered as a person reads them (workflows -iter-0 and -iter-1 are iterations 1 and 2).
      expect(timeline.marks?.map((mark) => mark.label)).toEqual(['iter 1', 'iter 2']);
      expect(timeline.title).toContain('iterations 1-2');

      for (const iteration of [0, 1]) {
        // Samples carried over may complete the next batch before it starts: that iteration takes
        // it at once, with no batch watch and no shard on the ranks it releases (design §3.1).
        const batchAtStart = !historyHasActivity(histories[iteration]!, 'awaitBatch');
        if (iteration === 0) expect(batchAtStart, 'the first iteration has nothing carried over').toBe(false);
        for (const [index, lane] of timeline.lanes.entries()) {
          const sequence = roleSequence(timeline, lane, iteration);
          if (shrinkRanks.includes(index)) {
            // Released: stop rolling out, give the GPU to the trainer (release + trainer onload in
            // one activity), take it back (reload + sync in one activity).
            expect(sequence, `${lane} iteration ${iteration}`).toEqual([...(batchAtStart ? [] : ['rollout']), 'offload', 'train', 'onload']);
          } else {
            // Kept: roll out (through training: the long tail), then sync. With the batch taken at
            // the start, a kept rank rolls out only if samples were waiting or admitted at the shrink.
            expect(batchAtStart ? [['rollout', 'sync'], ['sync']] : [['rollout', 'sync']], `${lane} iteration ${iteration}`).toContainEqual(sequence);
          }
        }
        // The train period sits between the released ranks' offload and their onload.
        const label = `iter ${iteration + 1}`;
        const train = timeline.segments.filter((segment) => segment.role === 'train' && segment.label === label);
        const offloadEnd = Math.max(...timeline.segments.filter((s) => s.role === 'offload' && s.label === label).map((s) => s.endMs));
        const onloadStart = Math.min(...timeline.segments.filter((s) => s.role === 'onload' && s.label === label).map((s) => s.startMs));
        expect(train.map((segment) => segment.lane).sort()).toEqual(['rank 0 · GPU 0', 'rank 1 · GPU 1']);
        for (const segment of train) {
          expect(segment.startMs).toBeGreaterThanOrEqual(offloadEnd);
          expect(segment.endMs).toBeLessThanOrEqual(onloadStart);
        }
      }

      const png = await svgToPng(await renderTimelinesSvg([timeline]));
      expect(png.length).toBeGreaterThan(20_000);
    } finally {
      await workers.stop();
    }

    // The command, as a user runs it: one iteration (the second: numbers from 1), files written, their paths printed.
    const out = path.join(dir, 'charts');
    const result = await cli(['timeline', runId, '--address', env.server.address, '--iterations', '2', '--out', out]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    for (const ext of ['svg', 'png', 'json']) expect(result.stdout).toContain(path.join(out, `${runId}-timeline.${ext}`));
    const [written] = parseTimelines(JSON.parse(readFileSync(path.join(out, `${runId}-timeline.json`), 'utf8')), 'written timeline');
    expect(written?.title).toContain('iteration 2');
    expect(written?.marks).toEqual([{ atMs: 0, label: 'iter 2' }]);

    const missing = await cli(['timeline', 'no-such-run', '--address', env.server.address, '--out', out]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no workflow 'timeshare-no-such-run'");
    const beyond = await cli(['timeline', runId, '--address', env.server.address, '--iterations', '2..3', '--out', out]);
    expect(beyond.code).toBe(1);
    expect(beyond.stderr).toContain(`has no iteration 3 (workflow '${iterationWorkflowId(runId, 2)}')`);
    const zero = await cli(['timeline', runId, '--address', env.server.address, '--iterations', '0', '--out', out]);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain('iteration numbers from 1');
  });
});

describe('timeline from recorded histories of the other strategies', () => {
  it('disaggregated: train on its own lane, the rollout ranks never offload', () => {
    const timeline = timelineFromIterationHistories([fixture('disaggregated', 0), fixture('disaggregated', 1)]);
    expect(timeline.lanes).toEqual(['rank 0 · GPU 0', 'rank 1 · GPU 1', 'rank 2 · GPU 2', 'train node 0 · GPU 3']);
    expectTiledLanes(timeline);
    for (const iteration of [0, 1]) {
      for (const lane of timeline.lanes.slice(0, 3)) expect(roleSequence(timeline, lane, iteration)).toEqual(['rollout', 'sync']);
      expect(roleSequence(timeline, 'train node 0 · GPU 3', iteration)).toEqual(['train']);
    }
  });

  it('colocated: every rank is released and trains', () => {
    const timeline = timelineFromIterationHistories([fixture('colocated', 0)]);
    expectTiledLanes(timeline);
    for (const lane of timeline.lanes) expect(roleSequence(timeline, lane, 0)).toEqual(['rollout', 'offload', 'train', 'onload']);
  });

  it('refuses a history whose activity ran on another rank than its input names', () => {
    const tampered = fixture('multiplexed', 0);
    const shard = tampered.history.events?.find((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'runRolloutShards');
    const queue = shard?.activityTaskScheduledEventAttributes?.taskQueue;
    expect(queue?.name).toBe('timeshare-rank-0');
    (queue as { name: string }).name = 'timeshare-rank-3';
    expect(() => timelineFromIterationHistories([tampered])).toThrow(/runRolloutShards on timeshare-rank-3: task queue is one of ranks \[0,1\]'s/);
  });
});

describe('timeline of shards run as one activity per node (runRolloutShards)', () => {
  const T0 = 1_800_000_000_000;
  /** Iteration 0 of a run on one node, four one-GPU ranks, with the given activities (times from its start). */
  const iteration = (activities: SyntheticActivity[]): IterationHistory => ({
    iteration: 0,
    history: syntheticHistory({
      input: {
        iteration: 0,
        spec: {
          runId: 'groups',
          taskQueuePrefix: 'timeshare',
          layout: { strategy: 'multiplexed', nodes: 1, gpusPerNode: 4, ranks: [0, 1, 2, 3].map((id) => ({ id, node: 0, gpus: [id] })), trainGpus: [0, 1], shrinkRanks: [0, 1] },
        },
      },
      startedMs: T0,
      closedMs: T0 + 1000,
      activities: activities.map((activity) => ({ ...activity, scheduledMs: T0 + activity.scheduledMs, startedMs: T0 + (activity.startedMs as number), closedMs: T0 + (activity.closedMs as number) })),
    }),
  });
  const group = (queueRank: number, ranks: number[], startedMs: number, closedMs: number): SyntheticActivity => ({
    type: 'runRolloutShards',
    taskQueue: `timeshare-rank-${queueRank}`,
    input: { runId: 'groups', shards: ranks.map((rank) => ({ runId: 'groups', shardId: `s${rank}`, rank, sampleIds: [rank] })) },
    scheduledMs: startedMs - 10,
    startedMs,
    closedMs,
  });
  const roles = (timeline: Timeline, lane: string) => laneSegments(timeline, lane).map(({ role, startMs, endMs }) => ({ role, startMs, endMs }));

  it('draws a group as rollout on each member’s rank, from its start to its close, beside a single shard (older histories)', () => {
    const single: SyntheticActivity = { type: 'runRolloutShard', taskQueue: 'timeshare-rank-3', input: { runId: 'groups', shardId: 's3', rank: 3 }, scheduledMs: 140, startedMs: 150, closedMs: 600 };
    const timeline = timelineFromIterationHistories([iteration([group(0, [0, 1, 2], 100, 500), single])]);
    expectTiledLanes(timeline);
    for (const lane of ['rank 0 · GPU 0', 'rank 1 · GPU 1', 'rank 2 · GPU 2']) {
      expect(roles(timeline, lane), lane).toEqual([
        { role: 'idle', startMs: 0, endMs: 100 },
        { role: 'rollout', startMs: 100, endMs: 500 },
        { role: 'idle', startMs: 500, endMs: 1000 },
      ]);
    }
    expect(roles(timeline, 'rank 3 · GPU 3')).toEqual([
      { role: 'idle', startMs: 0, endMs: 150 },
      { role: 'rollout', startMs: 150, endMs: 600 },
      { role: 'idle', startMs: 600, endMs: 1000 },
    ]);
  });

  it('refuses a group with no member, or sent to a queue none of its members owns', () => {
    expect(() => timelineFromIterationHistories([iteration([group(0, [], 100, 500)])])).toThrow(/runRolloutShards on timeshare-rank-0: unexpected input: shards: Too small/);
    expect(() => timelineFromIterationHistories([iteration([group(3, [0, 1], 100, 500)])])).toThrow(/runRolloutShards on timeshare-rank-3: task queue is one of ranks \[0,1\]'s/);
  });
});
