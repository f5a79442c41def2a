/**
 * Weight sync: disk against broadcast, by model size, on reference engine processes (CPU, gloo).
 *
 *   npx tsx scripts/bench-weight-sync.ts [--sizes 10M,100M,500M] [--engines 2] [--repeats 2] [--bucket-mib 256]
 *
 * For each size it starts a trainer process and `--engines` rollout engine processes with a model
 * of that many parameters (fp32), then measures, `--repeats` times each:
 * - disk: the trainer exports safetensors (`/trainer/export_weights`), then every engine loads the
 *   file at once (`/update_weights_from_disk`); bytes moved = one write + one read per engine;
 * - broadcast: the trainer broadcasts its weights in buckets to every engine of a formed group
 *   (`/trainer/broadcast_weights` ∥ `/update_weights_from_distributed` per bucket); bytes moved =
 *   the model once per engine over the collective. Forming the group (once per run) is timed apart.
 * Effective bandwidth = model bytes / sync time (what one engine gets). Prints one line per run and
 * a summary table (markdown).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HttpTrainer, SglangRolloutEngine } from '../src/engines/http';
import { startReferenceEngine, type ReferenceEngineProcess } from '../src/engines/reference/launch';
import type { WeightGroup } from '../src/engines/types';

const tiny = { vocabulary: '0123456789?', eos_id: 11, n_heads: 8, max_seq_len: 256, seed: 1 };
/** d_model and layers per size: ~12·L·d² parameters (attention 4d², feed-forward 8d²). */
const SHAPES: Record<string, { d_model: number; n_layers: number }> = {
  '10M': { d_model: 512, n_layers: 3 },
  '100M': { d_model: 1024, n_layers: 8 },
  '500M': { d_model: 2048, n_layers: 10 },
};

function flag(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 && process.argv[index + 1] !== undefined ? process.argv[index + 1]! : fallback;
}

const median = (xs: number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const gb = (bytes: number): string => (bytes / 1e9).toFixed(2);

async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const started = process.hrtime.bigint();
  const value = await work();
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, value };
}

interface Row {
  size: string;
  params: number;
  bytes: number;
  engines: number;
  diskSeconds: number;
  exportSeconds: number;
  diskBytesMoved: number;
  broadcastSeconds: number;
  broadcastBytesMoved: number;
  buckets: number;
  groupSetupSeconds: number;
}

async function benchSize(size: string, engineCount: number, repeats: number, bucketBytes: number, work: string): Promise<Row> {
  const shape = SHAPES[size];
  if (shape === undefined) throw new Error(`unknown size ${size}; known: ${Object.keys(SHAPES).join(', ')}`);
  const configPath = path.join(work, `model-${size}.json`);
  writeFileSync(configPath, JSON.stringify({ ...tiny, ...shape }));
  const processes: ReferenceEngineProcess[] = [];
  try {
    const launch = () => startReferenceEngine({ configPath, device: 'cpu', startTimeoutMs: 900_000, weightSyncTimeoutS: 600 });
    // One at a time: parallel starts of big models only contend for the same cores.
    const trainerProcess = await launch();
    processes.push(trainerProcess);
    for (let i = 0; i < engineCount; i++) processes.push(await launch());
    const trainer = new HttpTrainer({ baseUrl: trainerProcess.url });
    const sender = trainer.broadcast;
    const engines = processes.slice(1).map((p) => new SglangRolloutEngine({ baseUrl: p.url, sampling: { temperature: 1, stopTokenIds: [] } }));
    const manifest = await sender.weightManifest(bucketBytes);
    const params = manifest.buckets.reduce((sum, b) => sum + b.shapes.reduce((n, s) => n + s.reduce((a, c) => a * c, 1), 0), 0);
    const bytes = manifest.totalBytes;

    const disk: number[] = [];
    const exports: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const dir = path.join(work, `weights-${size}-${r}`);
      const exported = await timed(() => trainer.exportWeights(0, dir));
      const loaded = await timed(() => Promise.all(engines.map((engine) => engine.updateWeights(0, exported.value.path))));
      exports.push(exported.seconds);
      disk.push(exported.seconds + loaded.seconds);
      console.log(`${size}: disk #${r + 1}: export ${exported.seconds.toFixed(2)} s + load on ${engineCount} engines ${loaded.seconds.toFixed(2)} s`);
      rmSync(dir, { recursive: true, force: true });
    }

    const name = `bench-${size}`;
    const worldSize = 1 + engineCount;
    const formed = await timed(async () => {
      const group: WeightGroup = await sender.openWeightGroup({ name, masterAddress: '127.0.0.1', worldSize, backend: 'gloo' });
      await Promise.all(engines.map((engine, i) => engine.broadcast.joinWeightGroup(group, i + 1)));
      return group;
    });
    const group = formed.value;
    const broadcast: number[] = [];
    let buckets = 0;
    for (let r = 0; r < repeats; r++) {
      const sent = await timed(async () => {
        const [result] = await Promise.all([
          sender.broadcastWeights(name, 0, bucketBytes, 'flattened_bucket'),
          ...engines.map((engine) => engine.broadcast.receiveWeights(group, 0, manifest)),
        ]);
        return result;
      });
      buckets = sent.value.buckets;
      if (sent.value.bytes !== bytes) throw new Error(`broadcast sent ${sent.value.bytes} bytes, the manifest has ${bytes}`);
      broadcast.push(sent.seconds);
      console.log(`${size}: broadcast #${r + 1}: ${sent.seconds.toFixed(2)} s to ${engineCount} engines (${buckets} buckets; trainer's send ${sent.value.seconds.toFixed(2)} s)`);
    }
    return {
      size,
      params,
      bytes,
      engines: engineCount,
      diskSeconds: median(disk),
      exportSeconds: median(exports),
      diskBytesMoved: bytes * (1 + engineCount),
      broadcastSeconds: median(broadcast),
      broadcastBytesMoved: bytes * engineCount,
      buckets,
      groupSetupSeconds: formed.seconds,
    };
  } finally {
    for (const p of processes) await p.stop();
  }
}

async function main(): Promise<void> {
  const sizes = flag('--sizes', '10M,100M,500M').split(',');
  const engineCount = Number(flag('--engines', '2'));
  const repeats = Number(flag('--repeats', '2'));
  const bucketBytes = Math.round(Number(flag('--bucket-mib', '256')) * 2 ** 20);
  const work = mkdtempSync(path.join(os.tmpdir(), 'timeshare-bench-sync-'));
  const rows: Row[] = [];
  try {
    for (const size of sizes) rows.push(await benchSize(size, engineCount, repeats, bucketBytes, work));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`\n${os.cpus().length} CPU cores (${os.cpus()[0]?.model ?? 'unknown'}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; median of ${repeats}; bucket ${bucketBytes / 2 ** 20} MiB\n`);
  console.log('| model | params | fp32 bytes | engines | disk: export + load (s) | disk bytes moved | disk GB/s per engine | broadcast (s) | broadcast bytes moved | broadcast GB/s per engine | buckets | group setup, once (s) | broadcast / disk |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.size} | ${(r.params / 1e6).toFixed(1)}M | ${gb(r.bytes)} GB | ${r.engines} | ${r.diskSeconds.toFixed(2)} (export ${r.exportSeconds.toFixed(2)}) | ${gb(r.diskBytesMoved)} GB | ${(r.bytes / 1e9 / r.diskSeconds).toFixed(2)} | ${r.broadcastSeconds.toFixed(2)} | ${gb(r.broadcastBytesMoved)} GB | ${(r.bytes / 1e9 / r.broadcastSeconds).toFixed(2)} | ${r.buckets} | ${r.groupSetupSeconds.toFixed(2)} | ${(r.broadcastSeconds / r.diskSeconds).toFixed(2)} |`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
