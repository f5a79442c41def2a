/**
 * Orchestrator activities: store bookkeeping that needs no GPU (admission, batch threshold,
 * batch sealing, settling stopped shards, drops). Each is idempotent, so a retry after a crash
 * neither duplicates nor loses a sample.
 */
import { Context } from '@temporalio/activity';
import { checkNoDuplicates, checkNonEmpty } from '../validation/patterns';
import type { OrchestratorActivities } from '../contract/activities';
import { failingFast } from './failFast';
import { heartbeating } from './heartbeat';
import type { SealedBatchFigures, ShardOutcome } from '../contract/types';
import { BatchNotFoundError, type BatchManifest, type SampleRecord, type TrajectoryStore } from '../store';

function sealedFigures(manifest: BatchManifest): SealedBatchFigures {
  return {
    totalTokens: manifest.totalTokens,
    ...(manifest.totalTokensSquared === undefined ? {} : { totalTokensSquared: manifest.totalTokensSquared }),
    ...(manifest.tokenLags === undefined ? {} : { tokenLags: manifest.tokenLags }),
  };
}

/** How long awaitBatch waits for the records of markers that are already there. */
const RECORD_AFTER_MARKER_MS = 10;

export interface OrchestratorDeps {
  store(runId: string): TrajectoryStore;
  /** Prompt length of a new sample (the environment's reset; simulated from the workload). */
  promptTokens(sampleId: number): number;
  /** Real engines: the prompt's token ids (the environment's reset); its length wins over promptTokens. */
  promptIds?(sampleId: number): number[] | Promise<number[]>;
  /** How often awaitBatch looks for completions. */
  batchPollMs: number;
  /** Every activity heartbeats this often, so a dead orchestrator worker is noticed quickly. */
  heartbeatIntervalMs: number;
  now(): number;
}

export function createOrchestratorActivities(deps: OrchestratorDeps): OrchestratorActivities {
  return failingFast(heartbeating<OrchestratorActivities>({
    async admitSamples({ runId, ids, version }) {
      checkNoDuplicates('admitted sample ids', ids);
      const startedAtMs = deps.now();
      const prompts = await Promise.all(ids.map((id) => deps.promptIds?.(id)));
      const records: SampleRecord[] = ids.map((id, i) => {
        const promptIds = prompts[i];
        return {
          id,
          startVersion: version,
          ...(promptIds === undefined ? { promptTokens: deps.promptTokens(id) } : { promptTokens: promptIds.length, promptIds }),
          turns: [],
          status: 'running',
          startedAtMs,
        };
      });
      await deps.store(runId).admitSamples(records);
      return { admitted: ids.length, version };
    },

    async awaitBatch({ runId, candidates, batchSize }) {
      checkNonEmpty('batch candidates', candidates);
      const store = deps.store(runId);
      const context = Context.current();
      // Looks again as soon as the markers may be enough (the batch's last completion is seen in
      // milliseconds, not half a poll interval later), and every batchPollMs in any case.
      const wanted = new Set(candidates);
      const wake = new Wake();
      let marked = 0;
      let quickLooks = 3;
      const markedSince = new Set<number>();
      const stopWatching = await store.watchCompletions((id) => {
        if (id !== undefined && !wanted.has(id)) return;
        if (id !== undefined) markedSince.add(id);
        if (id === undefined || marked + markedSince.size >= batchSize) wake.fire();
      });
      try {
        for (;;) {
          wake.reset();
          markedSince.clear();
          // Polls the markers (a readdir); reads the candidates' records only once enough completed.
          marked = await store.countCompletionMarkers(candidates);
          let recordsBehind = false;
          if (marked >= batchSize) {
            const completed = await store.listCompleted(candidates);
            if (completed.length >= batchSize) return { sampleIds: completed };
            recordsBehind = true;
          }
          context.heartbeat({ completed: marked, needed: batchSize });
          if (recordsBehind && quickLooks > 0) {
            // A marker is written just before its record: look again once that write has landed
            // (not on every marker event: each look reads the candidates' records).
            quickLooks -= 1;
            await context.sleep(RECORD_AFTER_MARKER_MS);
          } else if (recordsBehind) {
            // Still short (a marker a crash left behind): back to the plain poll.
            await context.sleep(deps.batchPollMs);
          } else {
            await Promise.race([context.sleep(deps.batchPollMs), wake.fired()]);
          }
        }
      } finally {
        stopWatching();
      }
    },

    async sealBatch({ runId, iteration, fromVersion, sampleIds }) {
      const manifest = await deps.store(runId).sealBatch(iteration, fromVersion, sampleIds, deps.now());
      return sealedFigures(manifest);
    },

    async writeBatchManifest({ runId, iteration, fromVersion, sampleIds }) {
      const manifest = await deps.store(runId).writeBatchManifest(iteration, fromVersion, sampleIds, deps.now());
      return sealedFigures(manifest);
    },

    async readSealedBatch({ runId, iteration }) {
      try {
        const manifest = await deps.store(runId).readBatch(iteration);
        return { sampleIds: manifest.sampleIds, ...sealedFigures(manifest) };
      } catch (error) {
        if (error instanceof BatchNotFoundError) return null;
        throw error;
      }
    },

    async settleShards({ runId, shards }) {
      const store = deps.store(runId);
      const outcomes: ShardOutcome[] = [];
      for (const shard of shards) {
        const records = await store.readSamples(shard.sampleIds);
        const outcome: ShardOutcome = { shardId: shard.shardId, completed: [], unfinished: [], dropped: [] };
        for (const record of records) {
          if (record.status === 'completed') outcome.completed.push(record.id);
          else if (record.status === 'dropped') outcome.dropped.push({ id: record.id, reason: record.dropReason ?? 'unknown' });
          else outcome.unfinished.push(record.id);
        }
        outcomes.push(outcome);
      }
      return outcomes;
    },

    async dropSamples({ runId, ids, reason }) {
      await deps.store(runId).dropSamples(ids, reason);
      return { dropped: ids.length, reason };
    },

    async describeSamples({ runId, ids, fromId }) {
      const store = deps.store(runId);
      checkNoDuplicates('describeSamples ids', ids);
      const wanted = [...ids.filter((id) => id < fromId), ...(await store.findSampleIdsFrom(fromId))].sort((a, b) => a - b);
      const records = await store.readSamples(wanted);
      return records.map((record) => ({
        id: record.id,
        startVersion: record.startVersion,
        status: record.status,
        ...(record.dropReason === undefined ? {} : { dropReason: record.dropReason }),
      }));
    },
  }, deps.heartbeatIntervalMs));
}

/** A latch: fired() settles once fire() is called after the last reset(). */
class Wake {
  private promise!: Promise<void>;
  private resolve!: () => void;
  private isFired = false;

  constructor() {
    this.reset();
  }

  reset(): void {
    if (!this.isFired && this.promise !== undefined) return;
    this.isFired = false;
    this.promise = new Promise((resolve) => (this.resolve = resolve));
  }

  fire(): void {
    this.isFired = true;
    this.resolve();
  }

  fired(): Promise<void> {
    return this.promise;
  }
}
