/**
 * GPU-node activities of weight sync by broadcast (docs/design.md §3.1 step 7, §5.2): the
 * trainer's side (open the group, broadcast, close) on the trainer queue, the engines' side
 * (join, receive, leave) once per node for all its ranks. The workflow starts both sides of a
 * collective together under one deadline (src/workflows/weightSync.ts); every call heartbeats
 * and honours cancellation, and none is retried on its own: a collective is retried whole, in a
 * new group.
 *
 * The manifest (which tensors, in which buckets) is written to the store when the group opens,
 * so receivers on every node know what to expect without reaching the trainer.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import {
  broadcastResultSchema,
  engineStatusSchema,
  weightGroupSchema,
  weightManifestSchema,
  type RolloutEngine,
  type Trainer,
  type WeightManifest,
  type WeightReceiver,
  type WeightSender,
} from '../engines/types';
import { engineMayRecover } from '../engines/transient';
import { checkPostcondition } from '../validation/patterns';
import type { WeightBroadcastActivities } from '../contract/activities';
import { withHeartbeat } from './heartbeat';

export interface WeightBroadcastDeps {
  node: number;
  heartbeatIntervalMs: number;
  weightsDir(runId: string): string;
  requireRun(runId: string): void;
  engineFor(rank: number): RolloutEngine;
  trainer(): Trainer;
  everyRank(calls: Promise<void>[]): Promise<void>;
  /** Writes the weights of `version` for the engines to load from disk (the fallback). */
  exportWeights(runId: string, version: number): Promise<void>;
}

function notSupported(what: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(`${what} does not support weight sync by broadcast (engine.weightSync.mode: disk)`, 'EngineProtocolError');
}

function answer<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(`${what} returned a malformed answer: ${z.prettifyError(parsed.error).replace(/\n/g, ' ')}`, 'EngineProtocolError');
  return parsed.data;
}

export const manifestPath = (weightsDir: string, groupName: string): string => path.join(weightsDir, 'broadcast', `${groupName}.json`);

function writeManifest(file: string, manifest: WeightManifest): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const staging = `${file}.${process.pid}.tmp`;
  writeFileSync(staging, JSON.stringify(manifest));
  renameSync(staging, file);
}

function readManifest(file: string): WeightManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw ApplicationFailure.nonRetryable(`weight manifest ${file} is unreadable: ${(error as Error).message}`, 'StoreCorruptionError');
  }
  const parsed = weightManifestSchema.safeParse(raw);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(`weight manifest ${file} is malformed: ${z.prettifyError(parsed.error).replace(/\n/g, ' ')}`, 'StoreCorruptionError');
  return parsed.data;
}

/** How often a member that did not answer is asked again before a group forms. */
const MEMBER_POLL_MS = 250;

/**
 * Whether the rank's engine answers its status: false while it fails as a starting or restarting
 * engine does (engineMayRecover: no answer, a 5xx...); a malformed answer or any other failure is thrown.
 */
async function memberAnswers(rank: number, engine: RolloutEngine): Promise<boolean> {
  let status: unknown;
  try {
    status = await engine.status();
  } catch (error) {
    if (engineMayRecover(error)) return false;
    throw error;
  }
  answer(engineStatusSchema, status, `rank ${rank} engine status`);
  return true;
}

/**
 * Runs the ranks' sides of one collective on this node; the first to fail aborts the others' calls
 * and is thrown at once. A member whose engine died leaves its siblings waiting in the collective
 * (on NCCL until its own timeout), and waiting for them would hide the cause behind the sync's
 * deadline. Unlike the memory and disk calls (everyRank, which wait for every rank so that a retry
 * does not meet siblings still busy), a collective is never retried in place: the next attempt
 * forms a new group, and a sibling left in the old one is freed by that group's timeout.
 */
async function onEveryRankOfCollective(
  ranks: readonly number[],
  activitySignal: AbortSignal,
  call: (rank: number, index: number, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  const failed = new AbortController();
  const signal = AbortSignal.any([activitySignal, failed.signal]);
  const calls = ranks.map((rank, index) =>
    call(rank, index, signal).catch((error: unknown) => {
      failed.abort(error);
      throw error;
    }),
  );
  for (const pending of calls) pending.catch(() => undefined);
  await Promise.all(calls);
}

export function createWeightBroadcastActivities(deps: WeightBroadcastDeps): WeightBroadcastActivities {
  const sender = (): WeightSender => deps.trainer().broadcast ?? (() => { throw notSupported(`the trainer on node ${deps.node}`); })();
  const receiver = (rank: number): WeightReceiver => deps.engineFor(rank).broadcast ?? (() => { throw notSupported(`the rank ${rank} engine`); })();
  const signal = (): AbortSignal => Context.current().cancellationSignal;

  return {
    async openWeightGroup({ runId, spec, bucketBytes }) {
      deps.requireRun(runId);
      const trainer = sender();
      const group = answer(weightGroupSchema, await trainer.openWeightGroup(spec), `trainer on node ${deps.node}: open ${spec.name}`);
      checkPostcondition(`weight group ${spec.name} opened as asked`, group.name === spec.name && group.worldSize === spec.worldSize && group.backend === spec.backend, () => JSON.stringify(group));
      const manifest = answer(weightManifestSchema, await trainer.weightManifest(bucketBytes), `trainer on node ${deps.node}: weight manifest`);
      writeManifest(manifestPath(deps.weightsDir(runId), spec.name), manifest);
      return group;
    },

    async broadcastWeights({ runId, groupName, version, bucketBytes, layout }) {
      deps.requireRun(runId);
      const trainer = sender();
      const result = await withHeartbeat(deps.heartbeatIntervalMs, () => ({ broadcasting: version, group: groupName }), () =>
        trainer.broadcastWeights(groupName, version, bucketBytes, layout, signal()),
      );
      return answer(broadcastResultSchema, result, `trainer on node ${deps.node}: broadcast of v${version}`);
    },

    async closeWeightGroup({ runId, groupName }) {
      deps.requireRun(runId);
      await sender().closeWeightGroup(groupName);
    },

    async exportWeights({ runId, version }) {
      deps.requireRun(runId);
      await withHeartbeat(deps.heartbeatIntervalMs, () => ({ exporting: version }), () => deps.exportWeights(runId, version));
    },

    async awaitWeightGroupMembers({ runId, ranks }) {
      deps.requireRun(runId);
      let waiting = [...ranks];
      await withHeartbeat(deps.heartbeatIntervalMs, () => ({ awaitingMembers: waiting }), async () => {
        for (;;) {
          const answered = await Promise.all(waiting.map((rank) => memberAnswers(rank, deps.engineFor(rank))));
          waiting = waiting.filter((_, i) => !answered[i]);
          if (waiting.length === 0) return;
          await Context.current().sleep(MEMBER_POLL_MS);
        }
      });
    },

    async joinWeightGroup({ runId, ranks, group, rankOffsets }) {
      deps.requireRun(runId);
      checkPostcondition('one rank offset per rank', rankOffsets.length === ranks.length, () => JSON.stringify({ ranks, rankOffsets }));
      await withHeartbeat(deps.heartbeatIntervalMs, () => ({ joining: group.name, ranks }), () =>
        onEveryRankOfCollective(ranks, signal(), (rank, i, rankSignal) => receiver(rank).joinWeightGroup(group, rankOffsets[i]!, rankSignal)),
      );
    },

    async receiveWeights({ runId, ranks, group, version }) {
      deps.requireRun(runId);
      const manifest = readManifest(manifestPath(deps.weightsDir(runId), group.name));
      await withHeartbeat(deps.heartbeatIntervalMs, () => ({ receiving: version, group: group.name, ranks }), () =>
        onEveryRankOfCollective(ranks, signal(), async (rank, _, rankSignal) => {
          const engine = deps.engineFor(rank);
          await receiver(rank).receiveWeights(group, version, manifest, rankSignal);
          const status = answer(engineStatusSchema, await engine.status(), `rank ${rank} engine status`);
          checkPostcondition(`rank ${rank} serves weights v${version}`, status.weightVersion === version, () => JSON.stringify(status));
        }),
      );
    },

    async leaveWeightGroup({ runId, ranks, groupName }) {
      deps.requireRun(runId);
      await deps.everyRank(ranks.map((rank) => receiver(rank).leaveWeightGroup(groupName)));
    },
  };
}
