/**
 * Replay safety per workflow code version: every version in test/fixtures/versions.ts replays its
 * recorded histories against its own bundle without a non-determinism error. A running workflow
 * is pinned to the Worker Deployment version that started it (docs/design.md §5.2), so this is
 * what a worker of that version meets; the current code replays the current fixtures
 * (test/fixtures/histories, refreshed by scripts/record-histories.ts).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { FIXTURES_DIR, fixturePath, WORKFLOW_CODE_VERSIONS, type WorkflowCodeVersion } from '../fixtures/versions';
import { activitySpans, shardRanks } from '../../src/controlPlaneBench/historyFigures';
import { historyFromJson } from '../helpers/historyJson';
import { workflowBundle } from '../helpers/pipeline';

const EventType = temporal.api.enums.v1.EventType;
const jsonIn = (dir: string) => readdirSync(dir).filter((name) => name.endsWith('.json'));

/** Folders under the given roots that hold recorded histories (*.json), relative to test/fixtures. */
function historyFolders(root: string): string[] {
  if (!existsSync(root)) return [];
  const folders: string[] = [];
  const walk = (dir: string): void => {
    if (jsonIn(dir).length > 0) folders.push(path.relative(FIXTURES_DIR, dir));
    for (const name of readdirSync(dir)) if (statSync(path.join(dir, name)).isDirectory()) walk(path.join(dir, name));
  };
  walk(root);
  return folders;
}

const frozenBundles = new Map<string, WorkflowBundleOption>();
function bundleOf(version: WorkflowCodeVersion): Promise<WorkflowBundleOption> {
  if (version.bundle === 'current') return workflowBundle();
  let bundle = frozenBundles.get(version.bundle);
  if (bundle === undefined) {
    bundle = { code: gunzipSync(readFileSync(fixturePath(version.bundle))).toString('utf8') };
    frozenBundles.set(version.bundle, bundle);
  }
  return Promise.resolve(bundle);
}

/** Patch ids recorded in a history (core_patch markers). */
function patchIds(file: string): string[] {
  const history = historyFromJson(readFileSync(file, 'utf8'));
  return (history.events ?? []).flatMap((event) => {
    const marker = event.markerRecordedEventAttributes;
    if (marker?.markerName !== 'core_patch') return [];
    const data = marker.details?.['patch-data']?.payloads?.[0]?.data;
    return data ? [(JSON.parse(Buffer.from(data).toString('utf8')) as { id: string }).id] : [];
  });
}

describe('replay of recorded histories, each against its own workflow code version', () => {
  it('lists every folder of recorded histories in the version table, each once, and a bundle for each version', () => {
    const listed = WORKFLOW_CODE_VERSIONS.flatMap((version) => version.histories);
    expect(new Set(listed).size).toBe(listed.length);
    const onDisk = [...historyFolders(fixturePath('histories')), ...historyFolders(fixturePath('versions'))];
    expect([...listed].sort()).toEqual(onDisk.sort());
    expect(WORKFLOW_CODE_VERSIONS.filter((version) => version.bundle === 'current').map((version) => version.id)).toEqual(['current']);
    for (const version of WORKFLOW_CODE_VERSIONS) if (version.bundle !== 'current') expect(existsSync(fixturePath(version.bundle)), version.id).toBe(true);
  });

  it('has the run workflow and iterations of every strategy in each folder', () => {
    for (const folder of WORKFLOW_CODE_VERSIONS.flatMap((version) => version.histories)) {
      const files = jsonIn(fixturePath(folder));
      for (const strategy of ['multiplexed', 'colocated', 'disaggregated']) {
        expect(files, folder).toContain(`timeshare-replay-${strategy}.json`);
        expect(files, folder).toContain(`timeshare-replay-${strategy}-iter-0.json`);
      }
    }
  });

  it('the current fixtures include weight sync by broadcast: a group formed, its members awaited first', () => {
    const iteration = readFileSync(fixturePath('histories/timeshare-replay-multiplexed-broadcast-iter-0.json'), 'utf8');
    const scheduled = (historyFromJson(iteration).events ?? []).flatMap((event) => event.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    const formation = scheduled.filter((name) => ['awaitWeightGroupMembers', 'openWeightGroup', 'joinWeightGroup', 'broadcastWeights'].includes(name));
    expect(formation).toEqual(['awaitWeightGroupMembers', 'openWeightGroup', 'joinWeightGroup', 'broadcastWeights']);
  });

  it("the current fixtures' first iterations read the engines' KV capacity before their first admission", () => {
    for (const strategy of ['multiplexed', 'colocated', 'disaggregated']) {
      const events = historyFromJson(readFileSync(fixturePath(`histories/timeshare-replay-${strategy}-iter-0.json`), 'utf8')).events ?? [];
      const read = events.findIndex((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'readKvCapacity');
      const readDone = events.findIndex((event, i) => i > read && event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED);
      const firstShard = events.findIndex((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'runRolloutShards');
      expect(read, strategy).toBeGreaterThanOrEqual(0);
      expect(readDone, strategy).toBeGreaterThan(read);
      expect(firstShard, strategy).toBeGreaterThan(readDone);
    }
  });

  it("the current fixtures run a launch's shards as one activity per node and side of the shrink", () => {
    const largest = new Map<string, number>();
    for (const strategy of ['multiplexed', 'colocated', 'disaggregated']) {
      for (const iteration of [0, 1]) {
        const history = historyFromJson(readFileSync(fixturePath(`histories/timeshare-replay-${strategy}-iter-${iteration}.json`), 'utf8'));
        const started = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
        const { spec } = defaultPayloadConverter.fromPayload(started as Payload) as { spec: { layout: { ranks: { id: number; node: number }[]; shrinkRanks: number[] } } };
        const released = new Set(spec.layout.shrinkRanks);
        const groups = activitySpans(history).filter((span) => span.name === 'runRolloutShards');
        expect(groups.length, `${strategy} iteration ${iteration}`).toBeGreaterThan(0);
        expect(activitySpans(history).some((span) => span.name === 'runRolloutShard')).toBe(false);
        for (const ranks of groups.map(shardRanks)) {
          expect(new Set(ranks.map((rank) => spec.layout.ranks[rank]!.node)).size, `${strategy}: ranks ${ranks} on one node`).toBe(1);
          expect(new Set(ranks.map((rank) => released.has(rank))).size, `${strategy}: ranks ${ranks} on one side of the shrink`).toBe(1);
          largest.set(strategy, Math.max(largest.get(strategy) ?? 0, ranks.length));
        }
      }
    }
    // Several ranks' shards in one activity where the layout puts them on one node and one side.
    expect(largest.get('multiplexed')).toBeGreaterThan(1);
    expect(largest.get('colocated')).toBeGreaterThan(1);
    expect(largest.get('disaggregated')).toBeGreaterThan(1);
  });

  it('every activity the current code schedules says what it does in the Temporal UI (a summary)', () => {
    const unsummarised = jsonIn(fixturePath('histories')).flatMap((file) =>
      (historyFromJson(readFileSync(fixturePath(path.join('histories', file)), 'utf8')).events ?? []).flatMap((event) => {
        const name = event.activityTaskScheduledEventAttributes?.activityType?.name;
        return name !== undefined && event.userMetadata?.summary?.data == null ? [`${file}: ${name}`] : [];
      }),
    );
    expect(unsummarised).toEqual([]);
  });

  it('v1 fixtures cover both sides of its patched() branches (recorded before and after each change)', () => {
    const ids = (folder: string) => jsonIn(fixturePath(folder)).map((file) => ({ file, ids: patchIds(fixturePath(path.join(folder, file))) }));
    for (const { file, ids: found } of ids('versions/v1/histories')) expect(found, file).toContain('lost-ranks');
    for (const { file, ids: found } of ids('versions/v1/histories/pre-lost-ranks')) expect(found, file).toEqual([]);
    const iterations = (folder: string) => ids(folder).filter(({ file }) => file.includes('-iter-'));
    for (const { file, ids: found } of iterations('versions/v1/histories')) expect(found, file).toContain('direct-stop-running-only');
    for (const { file, ids: found } of iterations('versions/v1/histories/pre-direct-stop-running-only')) expect(found, file).not.toContain('direct-stop-running-only');
  });

  // One replay worker per version replays all of its histories (a worker per history cost about
  // a quarter of a second each, 30 s in all); a failure names each history that failed and why.
  for (const version of WORKFLOW_CODE_VERSIONS) {
    const files = version.histories.flatMap((folder) => jsonIn(fixturePath(folder)).map((file) => path.join(folder, file)));
    it(`${version.id}: replays its ${files.length} recorded histories (${version.histories.join(', ')}) on its own bundle`, async () => {
      const histories = files.map((file) => ({ workflowId: file, history: historyFromJson(readFileSync(fixturePath(file), 'utf8')) }));
      const replayed: string[] = [];
      const failures: string[] = [];
      for await (const result of Worker.runReplayHistories({ workflowBundle: await bundleOf(version) }, histories)) {
        replayed.push(result.workflowId);
        if (result.error !== undefined) failures.push(`${result.workflowId}: ${result.error instanceof Error ? result.error.message : String(result.error)}`);
      }
      expect(failures).toEqual([]);
      expect(replayed.sort()).toEqual([...files].sort());
    });
  }
});
