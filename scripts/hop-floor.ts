/**
 * The floor Temporal sets under the #11 transition targets on this machine: the transitions'
 * chain of workflow tasks and activity round trips (scripts/hop-floor/workflows.ts), with no work
 * in any step, on the same dev server and in-process workers as the control-plane bench.
 *
 *   nice -n -10 npx tsx scripts/hop-floor.ts --iterations 30 --ranks 8
 *
 * Prints the medians of batch→train (from the batch watch's answer to the train step's start)
 * and train→rolling (from the train step's answer to the next iteration's last shard started),
 * as scripts/transition-steps.ts reads them off the pipeline's histories.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { Command } from 'commander';
import { activitySpans, type ActivitySpan } from '../src/controlPlaneBench/historyFigures';
import { median } from '../src/controlPlaneBench/report';
import { startDevServer } from '../src/temporal/devServer';
import { cachedWorkflowBundle } from '../src/workers/bundle';
import { FLOOR_CHAINS, FLOOR_STEPS, type FloorActivities, type FloorChain } from './hop-floor/workflows';

const WORKFLOWS = path.join(__dirname, 'hop-floor', 'workflows.ts');
/** As the control-plane bench: eight one-GPU ranks per node, one stop, release or sync activity per node. */
const GPUS_PER_NODE = 8;

interface Flags {
  iterations: number;
  ranks: number;
  chain: FloorChain;
  throttled: boolean;
  shardPer: 'rank' | 'node';
  rankQueues: boolean;
}

/**
 * Temporal's history service reads its transfer and timer tasks at most 20 times a second per
 * shard by default: a chain of instant steps spends that burst in about a dozen hops and then
 * waits about 50 ms per hop. Every dev server started here raises it to 1000
 * (DEV_SERVER_DYNAMIC_CONFIG); `--throttled` measures with the server's own limit.
 */
const THROTTLED = { 'history.transferProcessorMaxPollRPS': 20, 'history.timerProcessorMaxPollRPS': 20 };

function only(spans: readonly ActivitySpan[], name: string): ActivitySpan[] {
  const found = spans.filter((span) => span.name === name);
  if (found.length === 0) throw new Error(`no '${name}' activity in the history`);
  return found;
}

function closed(span: ActivitySpan): number {
  if (span.closedMs === undefined) throw new Error(`activity '${span.name}' never closed`);
  return span.closedMs;
}

function started(span: ActivitySpan): number {
  if (span.startedMs === undefined) throw new Error(`activity '${span.name}' never started`);
  return span.startedMs;
}

async function main(): Promise<void> {
  const flags = new Command('hop-floor')
    .option('--iterations <n>', 'iterations (the first is left out of the medians)', Number, 30)
    .option('--ranks <n>', 'ranks: one shard activity each', Number, 8)
    .option('--chain <chain>', `the hops of a transition: ${FLOOR_CHAINS.join(' or ')}`, 'pipeline')
    .option('--shard-per <unit>', 'one shard activity per rank (as the pipeline) or per node', 'rank')
    .option('--rank-queues', "each shard on its rank's own queue, one worker each (as the pipeline), instead of on the node queue")
    .option('--throttled', "the server's own limit on reading history tasks (20 a second), not the dev server's 1000")
    .parse()
    .opts<Flags>();
  if (!Number.isInteger(flags.iterations) || flags.iterations < 3) throw new Error(`--iterations must be an integer ≥ 3, got ${flags.iterations}`);
  if (!Number.isInteger(flags.ranks) || flags.ranks < 1) throw new Error(`--ranks must be a positive integer, got ${flags.ranks}`);
  if (!(FLOOR_CHAINS as readonly string[]).includes(flags.chain)) throw new Error(`--chain must be one of ${FLOOR_CHAINS.join(', ')}, got '${flags.chain}'`);
  if (flags.shardPer !== 'rank' && flags.shardPer !== 'node') throw new Error(`--shard-per must be rank or node, got '${flags.shardPer}'`);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'timeshare-hop-floor-'));
  const server = await startDevServer({ headless: true, logFile: path.join(scratch, 'temporal.log'), ...(flags.throttled === true ? { dynamicConfig: THROTTLED } : {}) });
  try {
    const connection = await NativeConnection.connect({ address: server.address });
    const client = new Client({ connection: await Connection.connect({ address: server.address }) });
    const prefix = `hop-floor-${Date.now().toString(36)}`;
    const nodeQueue = `${prefix}-node`;
    const nodes = Math.ceil(flags.ranks / GPUS_PER_NODE);
    const activities = Object.fromEntries(FLOOR_STEPS.map((name) => [name, async () => undefined])) as FloorActivities;
    const orchestrator = await Worker.create({
      connection,
      taskQueue: `${prefix}-orchestrator`,
      // Built once per content of the floor's workflows, like the pipeline's bundle.
      workflowBundle: { codePath: (await cachedWorkflowBundle(WORKFLOWS)).codePath },
    });
    const node = await Worker.create({ connection, taskQueue: nodeQueue, activities });
    const rankQueues = flags.rankQueues === true;
    const shardQueues = rankQueues ? Array.from({ length: flags.ranks }, (_, rank) => `${nodeQueue}-rank-${rank}`) : [];
    const rankWorkers = await Promise.all(shardQueues.map((taskQueue) => Worker.create({ connection, taskQueue, activities, activityTaskPollerBehavior: { type: 'simple-maximum', maximum: 2 } })));
    const fetched = (async () => {
      try {
        await client.workflow.execute('floorRun', { taskQueue: `${prefix}-orchestrator`, workflowId: prefix, args: [{ chain: flags.chain, iterations: flags.iterations, shards: flags.shardPer === 'rank' ? flags.ranks : nodes, nodes, nodeQueue, rankQueues }] });
        return await Promise.all(Array.from({ length: flags.iterations }, (_, k) => client.workflow.getHandle(`${nodeQueue}-iter-${k}`).fetchHistory()));
      } finally {
        orchestrator.shutdown();
        node.shutdown();
        for (const worker of rankWorkers) worker.shutdown();
      }
    })();
    const [histories] = await Promise.all([fetched, orchestrator.run(), node.run(), ...rankWorkers.map((worker) => worker.run())]);
    const spans = histories.map((history) => activitySpans(history));
    const batchToTrain: number[] = [];
    const trainToRolling: number[] = [];
    const boundary: number[] = [];
    for (let k = 1; k < spans.length; k++) {
      const own = spans[k]!;
      batchToTrain.push(started(only(own, 'trainStep')[0]!) - closed(only(own, 'batchWatch')[0]!));
      const next = spans[k + 1];
      if (next === undefined) continue;
      const nextRolling = Math.max(...only(next, 'rollout').map(started));
      trainToRolling.push(nextRolling - closed(only(own, 'trainStep')[0]!));
      boundary.push(nextRolling - Math.max(...own.map(closed)));
    }
    const b = median(batchToTrain);
    const t = median(trainToRolling);
    console.log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; chain '${flags.chain}', ${flags.ranks} ranks, one shard per ${flags.shardPer}${rankQueues ? ' on its rank queue' : ''}, ${flags.iterations} iterations${flags.throttled === true ? ', throttled' : ''}`);
    console.log(`| batch→train median/max | train→rolling median/max | sum of medians | of which: last step → next iteration's shards started |`);
    console.log(`|---|---|---|---|`);
    console.log(`| ${b} / ${Math.max(...batchToTrain)} ms | ${t} / ${Math.max(...trainToRolling)} ms | ${b + t} ms | ${median(boundary)} ms |`);
  } finally {
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
