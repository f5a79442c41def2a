/**
 * Control-plane cost benchmark (docs/benchmarks.md "Control-plane cost"):
 *
 *   npm run bench:control-plane                 # sweep ranks 8..256 and batch 64..2048
 *   npm run bench:control-plane -- --quick      # a smaller sweep (about a minute)
 *   npm run bench:control-plane -- --scale      # 256 ranks on 4 gpu-node processes, 20 iterations
 *   npm run bench:control-plane -- --soak 200   # worker memory over 200 iterations
 *
 * Starts its own Temporal dev server (in memory, free ports), runs the real workflows and workers
 * over simulated engines whose durations are near zero, and prints per iteration: orchestration
 * on the critical path, the two transition latencies, history events and bytes, worker and server
 * CPU and memory.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { Client, Connection } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { installWorkerRuntime } from '../src/workers/telemetry';
import { historyToJson } from '../src/temporal/historyJson';
import { BENCH_TIME_SCALE, type BenchPoint } from '../src/controlPlaneBench/benchConfig';
import { checkTargets, growth, summarize, table, type PointSummary } from '../src/controlPlaneBench/report';
import { runPoint, type BenchEnv, type PointResult, type WorkerMode } from '../src/controlPlaneBench/runPoint';
import { checkIntRange } from '../src/validation/patterns';
import { startDevServer } from '../src/temporal/devServer';
import { cachedWorkflowBundle, WORKFLOW_BUNDLE_INPUTS } from '../src/workers/bundle';

interface Flags {
  quick?: boolean;
  scale?: boolean;
  soak?: number;
  ranks?: number[];
  batches?: number[];
  iterations?: number;
  mode: WorkerMode;
  gpusPerNode: number;
  timeScale?: number;
  json?: string;
  keep?: boolean;
  dumpHistories?: string;
}

const intList = (name: string) => (text: string) =>
  text.split(',').map((part) => checkIntRange(name, Number(part.trim()), 1, 65_536));

function plan(flags: Flags): { title: string; points: BenchPoint[]; mode: WorkerMode; rssEvery?: number }[] {
  const gpusPerNode = flags.gpusPerNode;
  const point = (ranks: number, batch: number, iterations: number, perNode = gpusPerNode): BenchPoint => ({
    ranks,
    batch,
    iterations,
    gpusPerNode: perNode,
    ...(flags.timeScale === undefined ? {} : { timeScale: flags.timeScale }),
  });
  if (flags.scale) {
    // 256 ranks on 4 nodes of 64 GPUs: 4 gpu-node worker processes (+ the orchestrator).
    return [{ title: 'scale run', points: [point(256, flags.batches?.[0] ?? 512, flags.iterations ?? 20, 64)], mode: 'processes' }];
  }
  if (flags.soak !== undefined) {
    const iterations = checkIntRange('--soak', flags.soak, 10, 100_000);
    return [{ title: `soak (${iterations} iterations)`, points: [point(flags.ranks?.[0] ?? 8, flags.batches?.[0] ?? 64, iterations)], mode: 'processes', rssEvery: Math.max(1, Math.floor(iterations / 10)) }];
  }
  const iterations = flags.iterations ?? (flags.quick ? 3 : 4);
  if (flags.ranks !== undefined || flags.batches !== undefined) {
    const ranks = flags.ranks ?? [8];
    const batches = flags.batches ?? [64];
    return [{ title: 'grid', points: ranks.flatMap((r) => batches.map((b) => point(r, b, iterations))), mode: flags.mode }];
  }
  if (flags.quick) {
    return [
      { title: 'ranks (batch 128)', points: [8, 32, 128].map((r) => point(r, 128, iterations)), mode: flags.mode },
      { title: 'batch (8 ranks)', points: [64, 512].map((b) => point(8, b, iterations)), mode: flags.mode },
    ];
  }
  return [
    { title: 'ranks (batch 256)', points: [8, 32, 128, 256].map((r) => point(r, 256, iterations)), mode: flags.mode },
    { title: 'batch (32 ranks)', points: [64, 512, 2048].map((b) => point(32, b, iterations)), mode: flags.mode },
    { title: 'largest (256 ranks, batch 2048)', points: [point(256, 2048, iterations)], mode: flags.mode },
  ];
}

function writeHistory(dir: string, workflowId: string, history: temporal.api.history.v1.IHistory): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `${workflowId}.json`), historyToJson(history));
}

async function main(): Promise<void> {
  const program = new Command('bench-control-plane')
    .option('--quick', 'a smaller sweep')
    .option('--scale', 'the scale run: 256 ranks on 4 gpu-node worker processes, 20 iterations')
    .option('--soak <iterations>', 'worker memory over this many iterations (8 ranks, batch 64)', Number)
    .option('--ranks <list>', 'ranks to sweep (comma-separated; with --batches: a full grid)', intList('--ranks'))
    .option('--batches <list>', 'batch sizes to sweep (comma-separated)', intList('--batches'))
    .option('--iterations <n>', 'iterations per point', Number)
    .option('--mode <mode>', "workers 'in-process' or one child process each ('processes')", 'in-process')
    .option('--gpus-per-node <n>', 'GPUs (one-GPU ranks) per node, one gpu-node worker each', Number, 8)
    .option('--time-scale <x>', `real seconds per simulated second (default ${BENCH_TIME_SCALE}: turns in well under a millisecond; 1: turns as long as the workload says)`, Number)
    .option('--json <file>', 'also write every figure as JSON')
    .option('--keep', 'keep the scratch folder (store, logs)')
    .option('--dump-histories <dir>', 'write every fetched workflow history there (JSON)');
  program.parse();
  const flags = program.opts<Flags>();
  if (flags.mode !== 'in-process' && flags.mode !== 'processes') throw new Error(`--mode must be 'in-process' or 'processes', got '${String(flags.mode)}'`);

  installWorkerRuntime({ logLevel: 'WARN' });
  const log = (line: string) => console.log(line);
  const rootDir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-bench-'));
  log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}; scratch ${rootDir}`);
  const dynamicConfig = Object.fromEntries((process.env.BENCH_DYNAMIC_CONFIG ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]).map(([k, v]) => [k, Number.isNaN(Number(v)) ? v : Number(v)]));
  const server = await startDevServer({ headless: true, logFile: path.join(rootDir, 'temporal.log'), dynamicConfig });
  // Interrupted: stop the dev server this script started before leaving.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`${signal}: stopping the dev server (pid ${server.pid})`);
      void server.stop().finally(() => process.exit(130));
    });
  }
  const connection = await Connection.connect({ address: server.address });
  const results: PointResult[] = [];
  try {
    // The bundle the workers of `timeshare dev` and `timeshare worker` run (built once per code version).
    const bundle = await cachedWorkflowBundle(WORKFLOW_BUNDLE_INPUTS);
    const env: BenchEnv = { server, client: new Client({ connection }), bundle, rootDir };
    const sections: { title: string; summaries: PointSummary[]; axis: 'ranks' | 'batch' }[] = [];
    for (const section of plan(flags)) {
      log(`\n== ${section.title}: ${section.mode} workers`);
      const summaries: PointSummary[] = [];
      for (const point of section.points) {
        log(`  running ${point.ranks} ranks, batch ${point.batch}, ${point.iterations} iterations ...`);
        const timeoutMs = 60_000 + point.iterations * (10_000 + point.batch * 20 + point.ranks * 100);
        const dump = flags.dumpHistories;
        const result = await runPoint(env, point, section.mode, {
          timeoutMs,
          log,
          ...(section.rssEvery === undefined ? {} : { rssEvery: section.rssEvery }),
          ...(dump === undefined ? {} : { onHistory: (id: string, history: temporal.api.history.v1.IHistory) => writeHistory(dump, id, history) }),
        });
        results.push(result);
        const summary = summarize(result);
        summaries.push(summary);
        log(table([summary]).split('\n').at(-1)!);
        if (flags.json !== undefined) writeFileSync(flags.json, JSON.stringify({ results }, null, 2));
        log(`  done in ${(result.runWallMs / 1000).toFixed(1)} s; activities in iteration ${result.iterations.length - 1}: ${JSON.stringify(result.iterations.at(-1)?.activities)}`);
        if (result.rssByIteration.length > 0) {
          log(`  worker RSS by iteration: ${result.rssByIteration.map((r) => `${r.iteration}: ${(r.rssBytes / 2 ** 20).toFixed(0)} MiB`).join(', ')}`);
        }
      }
      const axis = new Set(summaries.map((s) => s.ranks)).size > 1 ? 'ranks' : 'batch';
      sections.push({ title: section.title, summaries, axis });
      log('\n' + table(summaries));
      const grown = growth(summaries, axis);
      if (grown !== '') log(grown);
    }
    const all = sections.flatMap((section) => section.summaries);
    log('\n== all points\n' + table(all));
    log('\n== targets');
    for (const check of checkTargets(all)) log(`  [${check.met ? 'met' : 'NOT MET'}] ${check.target}: ${check.detail}`);
    if (flags.json !== undefined) writeFileSync(flags.json, JSON.stringify({ results, summaries: all }, null, 2));
  } finally {
    await connection.close();
    await server.stop();
    if (!flags.keep) rmSync(rootDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
