/**
 * What every GPU does over virtual time: one lane per rollout rank (its GPUs share a role) and one
 * per node for train GPUs outside any rank (disaggregated). Accumulates GPU-milliseconds per role
 * for the whole run and, while `recording`, the segments of the timeline (src/timeline/types.ts).
 *
 * A serving rank counts as 'rollout' only while it runs at least one request: a rank whose samples
 * all wait on their environment is idle (a bubble), as its GPUs are.
 */
import type { GpuId, PoolLayout, PoolState, RankId } from '../gpu';
import { TIMELINE_ROLES, type Timeline, type TimelineRole, type TimelineSegment } from '../timeline/types';

export type TrainerActivity = 'onload' | 'train' | 'offload';

interface Lane {
  name: string;
  gpus: GpuId[];
  rank: RankId | undefined;
  role: TimelineRole;
  since: number;
}

function gpuRange(gpus: readonly GpuId[]): string {
  return gpus.length === 1 ? `GPU ${gpus[0]}` : `GPUs ${gpus[0]}-${gpus[gpus.length - 1]}`;
}

export class LaneRecorder {
  private readonly lanes: Lane[] = [];
  private readonly rankLane = new Map<RankId, Lane>();
  private readonly gpuMs: Record<TimelineRole, number>;
  private readonly segments: TimelineSegment[] = [];
  private recordingOn = false;
  private recordedEndMs = 0;
  private pool: PoolState | undefined;
  private trainer: TrainerActivity | undefined;
  private trainSet = new Set<GpuId>();
  private syncing = false;

  constructor(
    layout: PoolLayout,
    private readonly now: () => number,
    private readonly busy: (rank: RankId) => boolean,
  ) {
    this.gpuMs = Object.fromEntries(TIMELINE_ROLES.map((role) => [role, 0])) as Record<TimelineRole, number>;
    const inRank = new Set<GpuId>();
    for (const rank of layout.ranks) {
      const lane: Lane = { name: `rank ${rank.id} (${gpuRange(rank.gpus)})`, gpus: rank.gpus, rank: rank.id, role: 'idle', since: 0 };
      this.lanes.push(lane);
      this.rankLane.set(rank.id, lane);
      for (const gpu of rank.gpus) inRank.add(gpu);
    }
    const outside = new Map<number, GpuId[]>();
    for (const gpu of layout.trainGpus) {
      if (inRank.has(gpu)) continue;
      const node = Math.floor(gpu / layout.gpusPerNode);
      outside.set(node, [...(outside.get(node) ?? []), gpu]);
    }
    for (const [node, gpus] of [...outside.entries()].sort((a, b) => a[0] - b[0])) {
      this.lanes.push({ name: `node ${node} train (${gpuRange(gpus)})`, gpus, rank: undefined, role: 'idle', since: 0 });
    }
  }

  set recording(on: boolean) {
    if (on === this.recordingOn) return;
    // Close the open segments at the switch so the timeline ends cleanly.
    const now = this.now();
    for (const lane of this.lanes) this.account(lane, now);
    this.recordingOn = on;
    if (!on) this.recordedEndMs = now;
  }

  setPool(pool: PoolState): void {
    this.pool = pool;
    this.refreshAll();
  }

  setTrainer(activity: TrainerActivity | undefined, trainGpus: readonly GpuId[]): void {
    this.trainer = activity;
    this.trainSet = new Set(trainGpus);
    this.refreshAll();
  }

  setSyncing(on: boolean): void {
    this.syncing = on;
    this.refreshAll();
  }

  refreshRank(rank: RankId): void {
    this.refresh(this.rankLane.get(rank)!);
  }

  close(): void {
    const now = this.now();
    for (const lane of this.lanes) this.account(lane, now);
    if (this.recordingOn) this.recordedEndMs = now;
  }

  gpuMsByRole(): Record<TimelineRole, number> {
    return { ...this.gpuMs };
  }

  timeline(title: string, strategy: string): Timeline {
    return { title, source: 'simulator', strategy, lanes: this.lanes.map((lane) => lane.name), segments: [...this.segments], endMs: this.recordedEndMs };
  }

  private refreshAll(): void {
    for (const lane of this.lanes) this.refresh(lane);
  }

  private roleOf(lane: Lane): TimelineRole {
    const trains = lane.gpus.some((gpu) => this.trainSet.has(gpu));
    if (lane.rank === undefined) return trains && this.trainer !== undefined ? this.trainer : 'idle';
    const phase = this.pool?.rankPhases[lane.rank] ?? 'serving';
    switch (phase) {
      case 'serving':
        return this.syncing ? 'sync' : this.busy(lane.rank) ? 'rollout' : 'idle';
      case 'offloading':
        return 'offload';
      case 'released':
        return trains && this.trainer !== undefined ? this.trainer : 'idle';
      case 'loading':
        return this.syncing ? 'sync' : 'onload';
      case 'lost':
        // The simulator loses no node; a lost rank would do nothing.
        return 'idle';
    }
  }

  private refresh(lane: Lane): void {
    const role = this.roleOf(lane);
    if (role === lane.role) return;
    this.account(lane, this.now());
    lane.role = role;
  }

  /** Books the lane's current role from `since` to `now`. */
  private account(lane: Lane, now: number): void {
    const span = now - lane.since;
    if (span <= 0) return;
    this.gpuMs[lane.role] += span * lane.gpus.length;
    if (this.recordingOn) this.segments.push({ lane: lane.name, role: lane.role, startMs: lane.since, endMs: now });
    lane.since = now;
  }
}
