/**
 * Where the rollout time of the staleness targets' two rows goes (docs/benchmarks.md "Staleness"):
 * the ROLL-like baseline and the pipeline's default on one workload shape, with the virtual
 * ranks' counters and what the simulator's internals show beyond them.
 *
 *   npx tsx scripts/staleness-diagnostics.ts [--shape heavy-tail] [--iterations 20] [--nodes 20]
 *
 * Per row: decoded, potential (no prefill stall) and prefilled tokens/s; generate calls, those
 * that queued, and idle prefixes evicted (of samples still rolling out, i.e. prefilled again at
 * their next turn, and of finished ones); the prefilled tokens by cause (prompt, after an
 * eviction, after a cache flush or a move to another rank, partial); and, sampled every 5 virtual
 * seconds over the ranks rolling out during full rollout, the samples per rank (all, decoding, in
 * a tool step, queued), the share of time a rank prefills, its KV in use by reservations and by
 * idle prefixes, and the committed contexts of its rolling samples over its KV capacity (mean,
 * standard deviation across ranks at one moment, share of moments above 1).
 *
 * A diagnostic: it reads the simulator's private state through a typed view and wraps two
 * methods of the virtual rank; the figures it adds are observations, the run is unchanged.
 */
import path from 'node:path';
import { POLICY_VARIANTS } from '../src/cli/simulatorBench';
import { simulationConfig } from '../src/simulator/config';
import { asStrategy, presetPath, readRawConfig, resizePool, shapedWorkload, WORKLOAD_SHAPES, type WorkloadShape } from '../src/simulator/presets';
import { Simulator } from '../src/simulator/simulator';
import { VirtualRank, type DecodeJob } from '../src/simulator/virtualRank';

interface RankView {
  idle: Map<number, number>;
  waiting: DecodeJob[];
  decoding: DecodeJob[];
  reservedTokens: number;
  activePrefill: DecodeJob | undefined;
  running: number;
  evictUntilFits(): void;
  admitWaiting(): boolean;
}

interface SampleView {
  status: 'running' | 'completed' | 'dropped';
  shard: { rank: number } | undefined;
  committedTokens: number;
  partialTokens: number;
  turn: number;
  envEvent: unknown;
}

interface SimulatorView {
  ranks: { engine: VirtualRank }[];
  samples: Map<number, SampleView>;
  queue: { schedule(at: number, run: () => void): unknown };
  nowMs: number;
  state: { phase: string } | undefined;
}

function option(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at < 0 ? undefined : process.argv[at + 1];
}

function positive(name: string, fallback: number): number {
  const text = option(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} needs a positive integer (got '${text}')`);
  return value;
}

const shapeText = option('--shape') ?? 'heavy-tail';
if (shapeText !== 'preset' && !(WORKLOAD_SHAPES as readonly string[]).includes(shapeText)) throw new Error(`--shape must be preset or one of ${WORKLOAD_SHAPES.join(', ')}`);
const shape = shapeText as WorkloadShape | 'preset';
const iterations = positive('--iterations', 20);
const file = presetPath('seed-160');
const preset = readRawConfig(file);
const raw = option('--nodes') === undefined ? preset : resizePool(preset, positive('--nodes', 20), file);
const SNAPSHOT_MS = 5000;

const rankProto = VirtualRank.prototype as unknown as RankView;
const originalEvict = rankProto.evictUntilFits;
const originalAdmit = rankProto.admitWaiting;

const fixed = (x: number, digits = 2): string => x.toFixed(digits);

for (const variant of [POLICY_VARIANTS[0]!, POLICY_VARIANTS.at(-1)!]) {
  const parsed = asStrategy(raw, 'multiplexed', file);
  const config = simulationConfig(parsed, {
    iterations,
    policy: variant.policy,
    staleness: variant.staleness,
    baseDir: path.dirname(file),
    kvCap: 'known',
    ...(shape === 'preset' ? {} : { workload: shapedWorkload(parsed, shape) }),
  });
  const simulator = new Simulator(config);
  const sim = simulator as unknown as SimulatorView;
  const capacity = config.rankModel.kvCapacityTokens;
  const rankOf = new Map<RankView, number>(sim.ranks.map((rank, index) => [rank.engine as unknown as RankView, index]));
  const evicted = new Set<string>();
  const prefill = { prompt: 0, afterEviction: 0, afterFlushOrMove: 0, partial: 0 };
  const evictions = { live: 0, finished: 0 };
  rankProto.evictUntilFits = function (this: RankView): void {
    const before = [...this.idle.keys()];
    originalEvict.call(this);
    for (const id of before) {
      if (this.idle.has(id)) continue;
      if (sim.samples.get(id)?.status === 'running') {
        evictions.live++;
        evicted.add(`${rankOf.get(this)}:${id}`);
      } else evictions.finished++;
    }
  };
  rankProto.admitWaiting = function (this: RankView): boolean {
    const waiting = [...this.waiting];
    const admitted = originalAdmit.call(this);
    for (const job of waiting) {
      if (job.phase === 'queued') continue;
      const sample = sim.samples.get(job.sampleId);
      const key = `${rankOf.get(this)}:${job.sampleId}`;
      const tokens = job.contextTokens - job.cachedTokens;
      if (sample !== undefined && sample.turn === 0 && sample.partialTokens === 0) prefill.prompt += tokens;
      else if (job.cachedTokens > 0) prefill.partial += tokens;
      else if (evicted.has(key)) prefill.afterEviction += tokens;
      else prefill.afterFlushOrMove += tokens;
      evicted.delete(key);
    }
    return admitted;
  };
  const rollout = { rankSnapshots: 0, moments: 0, samples: 0, decoding: 0, inTool: 0, queued: 0, prefilling: 0, reserved: 0, idleLive: 0, idleFinished: 0, context: 0, spread: 0, overflow: 0 };
  const snapshot = (): void => {
    if (sim.state?.phase === 'rollout') {
      const contexts: number[] = [];
      sim.ranks.forEach(({ engine }, rank) => {
        const view = engine as unknown as RankView;
        let samples = 0;
        let inTool = 0;
        let context = 0;
        for (const sample of sim.samples.values()) {
          if (sample.status !== 'running' || sample.shard?.rank !== rank) continue;
          samples++;
          context += sample.committedTokens;
          if (sample.envEvent !== undefined) inTool++;
        }
        if (samples === 0 && view.running === 0) return;
        let idleLive = 0;
        let idleFinished = 0;
        for (const [id, tokens] of view.idle) {
          if (sim.samples.get(id)?.status === 'running') idleLive += tokens;
          else idleFinished += tokens;
        }
        rollout.rankSnapshots++;
        rollout.samples += samples;
        rollout.decoding += view.decoding.length;
        rollout.inTool += inTool;
        rollout.queued += view.waiting.length;
        rollout.prefilling += view.activePrefill === undefined ? 0 : 1;
        rollout.reserved += view.reservedTokens / capacity;
        rollout.idleLive += idleLive / capacity;
        rollout.idleFinished += idleFinished / capacity;
        rollout.context += context / capacity;
        if (context > capacity) rollout.overflow++;
        contexts.push(context / capacity);
      });
      if (contexts.length > 0) {
        const mean = contexts.reduce((sum, x) => sum + x, 0) / contexts.length;
        rollout.spread += Math.sqrt(contexts.reduce((sum, x) => sum + (x - mean) ** 2, 0) / contexts.length);
        rollout.moments++;
      }
    }
    sim.queue.schedule(sim.nowMs + SNAPSHOT_MS, snapshot);
  };
  sim.queue.schedule(SNAPSHOT_MS, snapshot);
  const result = simulator.run();
  rankProto.evictUntilFits = originalEvict;
  rankProto.admitWaiting = originalAdmit;

  const seconds = result.totals.virtualMs / 1000;
  const ranks = result.rankTotals;
  const prefilled = prefill.prompt + prefill.afterEviction + prefill.afterFlushOrMove + prefill.partial;
  const n = rollout.rankSnapshots;
  console.log(`${variant.name} (${shape}, ${iterations} iterations, ${result.gpus} GPUs): ${fixed(result.totals.trainedSamples / seconds, 3)} trained trajectories/s`);
  console.log(
    `  tokens/s: decoded ${Math.round(ranks.decodedTokens / seconds)} (trained ${Math.round(result.totals.staleness.trainedDecodedTokens / seconds)}), potential ${Math.round(ranks.potentialTokens / seconds)}, prefilled ${Math.round(ranks.prefilledTokens / seconds)}`,
  );
  console.log(`  generate calls ${ranks.admitted}, queued ${ranks.queuedAdmissions}; idle prefixes evicted ${ranks.evictions}: of samples rolling out ${evictions.live}, of finished ones ${evictions.finished}`);
  console.log(
    `  prefilled tokens: prompt ${fixed(prefill.prompt / prefilled)}, after an eviction ${fixed(prefill.afterEviction / prefilled)}, after a flush or a move ${fixed(prefill.afterFlushOrMove / prefilled)}, partial ${fixed(prefill.partial / prefilled)}`,
  );
  console.log(
    `  per rank rolling out (full rollout, every ${SNAPSHOT_MS / 1000} s): samples ${fixed(rollout.samples / n, 1)} (decoding ${fixed(rollout.decoding / n, 1)}, in a tool step ${fixed(rollout.inTool / n, 1)}, queued ${fixed(rollout.queued / n, 1)}), prefilling ${fixed(rollout.prefilling / n)} of the time; ` +
      `KV reserved ${fixed(rollout.reserved / n)}, idle prefixes of rolling / finished samples ${fixed(rollout.idleLive / n)} / ${fixed(rollout.idleFinished / n)}; ` +
      `committed contexts / KV capacity ${fixed(rollout.context / n)} (sd across ranks ${fixed(rollout.spread / rollout.moments)}), above 1 in ${fixed(rollout.overflow / n)} of rank-moments; ` +
      `resident context per rolling sample ${Math.round((rollout.context / rollout.samples) * capacity)} tokens`,
  );
}
