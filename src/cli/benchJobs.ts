/**
 * The bench's simulations as independent jobs (a strategy, a static split candidate, a policy
 * variant, a sweep point), described by plain data so that they can run in worker threads
 * (benchWorker.ts) side by side. A job's figures do not depend on where or beside what it runs:
 * each simulation is deterministic and shares no state with the others.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { loadWorkloadCsv, WorkloadModel } from '../engines/simulated/workload';
import type { SchedulingPolicy, StalenessPolicy, Strategy } from '../gpu';
import { simulationConfig } from '../simulator/config';
import { asStrategy, shapedWorkload, type WorkloadShape } from '../simulator/presets';
import { strategyReport, type StrategyReport } from '../simulator/report';
import { simulate, type IterationRecord } from '../simulator/simulator';
import type { Timeline } from '../timeline/types';

export interface BenchJob {
  /** The config file `raw` comes from (messages; a relative workload csvPath resolves against its directory). */
  file: string;
  raw: Record<string, unknown>;
  strategy: Strategy;
  iterations: number;
  timelineIterations?: number;
  /** Turns per trajectory from this workload CSV (bench --workload-csv). */
  csv?: string;
  /** The workload shape of a sweep point (replaces the config's turn distribution). */
  shape?: WorkloadShape;
  policy?: SchedulingPolicy;
  staleness?: StalenessPolicy;
  /** Also return the timeline and the iteration records (the strategies' runs). */
  full?: boolean;
}

export interface BenchJobResult {
  report: StrategyReport;
  timeline?: Timeline;
  iterations?: IterationRecord[];
  /** Wall seconds the simulation took where it ran. */
  wallSeconds: number;
}

export function runBenchJob(job: BenchJob): BenchJobResult {
  const started = Date.now();
  const parsed = asStrategy(job.raw, job.strategy, job.file);
  const workload =
    job.shape !== undefined
      ? shapedWorkload(parsed, job.shape)
      : job.csv !== undefined
        ? new WorkloadModel(
            { ...parsed.config.simulation.workload, turnDistribution: 'csv', csvPath: job.csv },
            { maxTurns: parsed.config.maxTurns, maxTokens: parsed.config.maxTokens },
            loadWorkloadCsv(job.csv).rows,
          )
        : undefined;
  const result = simulate(
    simulationConfig(parsed, {
      iterations: job.iterations,
      ...(job.timelineIterations === undefined ? {} : { timelineIterations: job.timelineIterations }),
      ...(job.policy === undefined ? {} : { policy: job.policy }),
      ...(job.staleness === undefined ? {} : { staleness: job.staleness }),
      baseDir: path.dirname(job.file),
      workload,
    }),
  );
  return {
    report: strategyReport(result),
    ...(job.full === true ? { timeline: result.timeline, iterations: result.iterations } : {}),
    wallSeconds: (Date.now() - started) / 1000,
  };
}

/** The compiled worker entry (absent when the CLI runs from TypeScript sources, e.g. under tsx). */
function workerFile(): string | undefined {
  return __filename.endsWith('.js') ? path.join(__dirname, 'benchWorker.js') : undefined;
}

/**
 * Runs the jobs on up to `threads` worker threads (in this thread when `threads` is 1 or there
 * is no compiled worker); returns the results in the jobs' order. Jobs start in the order given:
 * put the longest first. The first failure rejects with the job named.
 */
export async function runBenchJobs(jobs: readonly BenchJob[], threads: number): Promise<BenchJobResult[]> {
  const file = workerFile();
  const size = Math.min(threads, jobs.length);
  if (size <= 1 || file === undefined) return jobs.map(runBenchJob);
  const results: BenchJobResult[] = new Array<BenchJobResult>(jobs.length);
  let next = 0;
  const runWorker = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const worker = new Worker(file);
      let current = -1;
      const fail = (error: Error): void => {
        void worker.terminate();
        reject(new Error(`bench job ${describeJob(jobs[current])}: ${error.message}`, { cause: error }));
      };
      const feed = (): void => {
        if (next >= jobs.length) {
          void worker.terminate().then(() => resolve());
          return;
        }
        current = next++;
        worker.postMessage(jobs[current]);
      };
      worker.on('message', (message: { result?: BenchJobResult; error?: string; stack?: string }) => {
        if (message.error !== undefined) {
          const error = new Error(message.error);
          if (message.stack !== undefined) error.stack = message.stack;
          return fail(error);
        }
        results[current] = message.result!;
        feed();
      });
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (code !== 0 && current >= 0 && results[current] === undefined) fail(new Error(`worker thread exited with code ${code}`));
      });
      feed();
    });
  await Promise.all(Array.from({ length: size }, runWorker));
  return results;
}

function describeJob(job: BenchJob | undefined): string {
  if (job === undefined) return '(none started)';
  return `${job.strategy} of ${job.file}${job.shape === undefined ? '' : `, ${job.shape} workload`}, ${job.iterations} iterations`;
}
